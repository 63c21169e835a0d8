# jobs/lib/setup.sh - shared set-up for tests/run.sh and jobs/run-local.sh (sourced, not run).
# sd_setup_packages PKG...   installs missing Debian packages (as root, or with sudo), or
#                            prints the exact apt-get line and fails.
# sd_setup_build [cmake args] configures and builds into $SD_BUILD_DIR (default build/).

SD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SD_BUILD_DIR=${SD_BUILD_DIR:-$SD_ROOT/build}

# Packages the program needs to build and run.
SD_BUILD_PACKAGES="build-essential cmake pkg-config git libopenmpi-dev openmpi-bin libhdf5-openmpi-dev
hdf5-tools libscalapack-openmpi-dev libopenblas-dev libtiff-dev libjpeg-dev libpng-dev libyaml-dev
libcairo2-dev"
# The single-node Slurm integration test (tests/slurm, label slurm) needs these.
SD_SLURM_PACKAGES="slurm-wlm munge"

sd_log() { printf '[%s] %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }

sd_setup_packages() {
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "stemdefect: missing Debian packages: ${missing[*]}" >&2
      echo "install them with:" >&2
      echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
      return 1
    fi
  fi
  sd_log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || { echo "stemdefect: apt-get update failed" >&2; return 1; }
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "stemdefect: apt-get install ${missing[*]} failed" >&2; return 1; }
}

sd_setup_build() {
  sd_log "configuring in $SD_BUILD_DIR"
  cmake -S "$SD_ROOT" -B "$SD_BUILD_DIR" -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo} "$@" >"$SD_BUILD_DIR.configure.log" 2>&1 ||
    { cat "$SD_BUILD_DIR.configure.log" >&2; return 1; }
  sd_log "building"
  cmake --build "$SD_BUILD_DIR" -j "$(nproc)" >"$SD_BUILD_DIR.build.log" 2>&1 ||
    { tail -n 60 "$SD_BUILD_DIR.build.log" >&2; return 1; }
}

# mpirun as root needs these; beyond the core count it needs oversubscription.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
