#!/usr/bin/env bash
# Creates (once) the Python virtual environment the integration tests, examples, demo and
# benchmark comparison and the tuning plot (matplotlib) use, at $NNN_VENV, from PyPI through pip. It also carries NVIDIA's
# NVRTC library (nvidia-cuda-nvrtc-cu12), with which the engine test compiles the CUDA kernel
# on machines without a GPU.
set -euo pipefail
venv=${NNN_VENV:?NNN_VENV must name the venv directory}
want="numpy psycopg[binary] sqlalchemy pgvector pytest faiss-cpu matplotlib nvidia-cuda-nvrtc-cu12"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import numpy, psycopg, sqlalchemy, pgvector, pytest, faiss, matplotlib, nvidia.cuda_nvrtc' 2>/dev/null; then
  echo "venv: creating $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q $want
fi
