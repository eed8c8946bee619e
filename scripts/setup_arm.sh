#!/usr/bin/env bash
# Idempotent: installs the ARM toolchain (arm-none-eabi-gcc + newlib) and QEMU that the SpiNNaker2 PE
# program is built and cross-checked with. Needs root (apt-get); elsewhere the QEMU tests skip.
set -euo pipefail
PACKAGES=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)

have_all() {
    command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
        && [ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/librdimon.a ]
}

if have_all; then
    echo "setup_arm: arm-none-eabi-gcc, newlib and qemu-system-arm already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_arm: not root, cannot apt-get install ${PACKAGES[*]}; the SpiNNaker2 QEMU tests will skip"
    exit 0
fi
# Reached only while something is missing, so the package lists are refreshed once per install.
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
