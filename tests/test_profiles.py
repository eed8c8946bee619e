"""Integer primitives of the profiles against their stated rules (profiles.py docstring)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from egru_deploy.profiles import (LOIHI2, PROFILES, SPINNAKER2, LookupTable, rshift_round, saturate,
                                  zoneout_blend)

ints = st.integers(min_value=-(2 ** 40), max_value=2 ** 40)


@given(ints, st.integers(min_value=1, max_value=20))
def test_rshift_round_is_round_half_up(x, s):
    # exact rational arithmetic: floor(x / 2^s + 1/2)
    assert int(rshift_round(x, s)) == (2 * x + 2 ** s) // 2 ** (s + 1)


@given(ints, st.integers(min_value=-10, max_value=0))
def test_rshift_round_nonpositive_shift_is_exact_left_shift(x, s):
    assert int(rshift_round(x, s)) == x * 2 ** (-s)


@given(st.lists(ints, min_size=1, max_size=20), st.integers(min_value=2, max_value=32))
def test_saturate_clips_and_counts(values, bits):
    counter = {}
    out = saturate(np.array(values), bits, counter, "k")
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert list(out) == [min(max(v, lo), hi) for v in values]
    assert counter.get("k", 0) == sum(1 for v in values if v < lo or v > hi)


F = 12
ONE = 1 << F


@given(st.integers(min_value=-(2 ** 31), max_value=2 ** 31 - 1))
def test_lookup_table_rule(a):
    lut = LookupTable()
    for fn, log2_range in (("sigmoid", lut.sigmoid_log2_range), ("tanh", lut.tanh_log2_range)):
        shift = F + log2_range + 1 - lut.index_bits
        idx = min(max((a + (1 << (F + log2_range))) >> shift, 0), (1 << lut.index_bits) - 1)
        centre = -(2.0 ** log2_range) + (idx + 0.5) * 2.0 ** (shift - F)
        ref = 1 / (1 + np.exp(-centre)) if fn == "sigmoid" else np.tanh(centre)
        assert int(getattr(lut, fn)(a, F)) == int(np.round(ref * ONE))


def test_lookup_table_error_bounds_and_size():
    lut = LookupTable()
    a = np.arange(-10 * ONE, 10 * ONE, 5)
    assert np.max(np.abs(lut.sigmoid(a, F) / ONE - 1 / (1 + np.exp(-a / ONE)))) < 0.005
    assert np.max(np.abs(lut.tanh(a, F) / ONE - np.tanh(a / ONE))) < 0.01
    assert lut.describe(F)["bytes"] <= 8192  # both tables fit comfortably in a PE's DTCM


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_profile_widths_match_design(profile):
    assert profile.weight_bits == 8
    if profile is LOIHI2:
        assert (profile.acc_bits, profile.state_bits, profile.event_bits) == (24, 24, 24)
        assert profile.weight_even and profile.weight_max == 126
    if profile is SPINNAKER2:
        assert (profile.acc_bits, profile.state_bits, profile.event_bits) == (32, 32, 32)
        assert not profile.weight_even and profile.weight_max == 127
    assert profile.event_frac <= profile.state_frac
    assert profile.trace_gain == round(0.1 * 2 ** profile.state_frac)


state = st.integers(min_value=-(2 ** 31), max_value=2 ** 31 - 1)


@given(state, state, st.integers(min_value=0, max_value=ONE))
def test_zoneout_blend_rule(c_new, c_prev, gain):
    # rshift_round(gain * c + (2^F - gain) * c', F), exactly; it lies between c and c' (nothing to saturate)
    blended = int(zoneout_blend(c_new, c_prev, gain, F))
    assert blended == (2 * (gain * c_prev + (ONE - gain) * c_new) + ONE) // (2 * ONE)
    assert min(c_new, c_prev) <= blended <= max(c_new, c_prev)


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_zoneout_gain_is_p_in_format_f(profile):
    one = 1 << profile.state_frac
    assert [profile.zoneout_gain(p) for p in (0.0, 0.25, 0.2319, 0.99999)] == [0, one // 4, round(0.2319 * one), one]
