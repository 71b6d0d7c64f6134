#!/usr/bin/env bash
# Create .venv (if needed) and install hpwf with its whole stack, Horovod compiled from source.
# Idempotent: a stamp file keyed on this script and pyproject.toml skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${HPWF_VENV:-$root/.venv}
key=$(cat scripts/install.sh pyproject.toml requirements.lock | sha256sum | cut -c1-16)
stamp=$venv/.hpwf-install-$key
[ -f "$stamp" ] && exit 0

log() { printf '[install] %s\n' "$*"; }
start=$SECONDS
[ -x "$venv/bin/python" ] || { log "creating $venv"; python3 -m venv "$venv"; }
# The venv's bin/ must come first: Horovod's CMake has to find the venv's mpicxx.
export PATH=$venv/bin:$PATH
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

log "python packages (torch CPU wheel, optuna, dask, mpich, mpi4py, ...)"
pip install -U pip setuptools wheel
# torch==2.13.0 is the CPU wheel on this kind of machine; a bare "torch" would pull a CUDA build.
pip install torch==2.13.0
pip install -r requirements.lock

hvd_version=0.28.1
if ! "$venv/bin/python" -c "import horovod.torch" 2>/dev/null; then
  log "building horovod $hvd_version with PyTorch, MPI and Gloo (about 5 minutes on 2 cores)"
  build=$(mktemp -d)
  pip download --no-deps --no-binary :all: -d "$build" "horovod==$hvd_version"
  tar -xzf "$build"/horovod-$hvd_version.tar.gz -C "$build"
  src=$build/horovod-$hvd_version
  # PyTorch >= 2.1 headers require C++17; Horovod 0.28.1 asks CMake for C++14.
  sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  # MPICH >= 4.2 prints "HYDRA" in `mpirun --version`; let horovodrun --mpi recognise it.
  sed -i "s/elif 'MPICH' in output:/elif 'MPICH' in output or 'HYDRA' in output:/" "$src/horovod/runner/mpi_run.py"
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 MAKEFLAGS=-j"$(nproc)" \
    pip install --no-build-isolation --no-cache-dir "$src"
  rm -rf "$build"
fi
"$venv/bin/horovodrun" --check-build | tee "$venv/horovod-check-build.txt"
for need in "[X] PyTorch" "[X] MPI" "[X] Gloo"; do
  grep -qF "$need" "$venv/horovod-check-build.txt" || { log "horovod lacks $need"; exit 1; }
done

pip install --no-deps --no-build-isolation -e .
rm -f "$venv"/.hpwf-install-*
touch "$stamp"
log "done in $((SECONDS - start)) s"
