#!/usr/bin/env bash
# Regenerate the committed outputs of the tutorial notebooks: run each one (all of notebooks/, or
# those named, e.g. notebooks/06_evaluate.ipynb) top to bottom at full scale, and write the
# executed notebook in place of the file.
#
# A notebook runs in a scratch folder of its own, so what it writes (datasets, answers) never
# lands in the repository and every run starts from nothing, as a reader's first run does; the
# scratch folder is removed afterwards. The file is replaced only when the whole run succeeded
# (staged beside it, then renamed), so a failing cell leaves the committed notebook as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 REXOMNI_NOTEBOOK_SCALE=full

if [ "$#" -gt 0 ]; then
    notebooks=("$@")
else
    notebooks=(notebooks/*.ipynb)
fi
jupyter="$PWD/.venv/bin/jupyter"
for notebook in "${notebooks[@]}"; do
    notebook=$(realpath "$notebook")
    name=$(basename "$notebook")
    scratch=$(mktemp -d)
    trap 'echo "run_notebooks: $name failed; its partly executed copy is in $scratch" >&2' ERR
    cp "$notebook" "$scratch/$name"
    start=$(date +%s)
    # `jupyter execute` runs the kernel in the notebook's folder: the scratch copy's.
    "$jupyter" execute --inplace --timeout=1200 "$scratch/$name"
    seconds=$(( $(date +%s) - start ))
    staged="$(dirname "$notebook")/.$name.partial"
    cp "$scratch/$name" "$staged"
    mv "$staged" "$notebook"
    rm -rf "$scratch"
    echo "$name: ran in ${seconds} s, $(stat -c %s "$notebook") bytes"
done
