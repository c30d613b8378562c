#!/usr/bin/env bash
# Installs the Debian packages qmamba builds and runs with, if any is missing.
set -euo pipefail
packages=(libopenmpi-dev openmpi-bin libopenblas-dev libturbojpeg0-dev libpng-dev zlib1g-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
