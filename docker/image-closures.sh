#!/usr/bin/env bash
# What each image installs, checked without Docker (`make image-closures`): for every image (or those
# named), the install docker/Dockerfile does, into a fresh virtualenv var/image-closures/<image>, from a
# copy of the build context (.dockerignore's: no tests); then `pip check`, the image's entry point
# (python -m vigie_<image> --help), every module of its package imported, and the size of site-packages.
# A module importing what its image lacks fails here (the static check is
# libs/vigie-core/tests/test_package_dependencies.py, in `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${OUT:-var/image-closures}
images=("$@")
if [ ${#images[@]} -eq 0 ]; then
  images=(ingest inference anonymiser aggregation registry audit models)
fi

context="$OUT/context"
rm -rf "$context" && mkdir -p "$context"
tar -cf - --exclude=tests --exclude=__pycache__ --exclude='*.egg-info' --exclude=build \
  requirements.txt docker/closure.py libs/vigie-proto libs/vigie-core libs/vigie-models services \
  | tar -xf - -C "$context"
cp "$context/docker/closure.py" "$context/closure.py"

summary=()
for image in "${images[@]}"; do
  venv="$(pwd)/$OUT/$image"
  package="vigie_$image"
  echo "== $image" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  (
    cd "$context"
    "$PYTHON" closure.py constraints requirements.txt > constraints.txt
    "$PYTHON" closure.py requirements "$image" > "image-requirements-$image.txt"
    if ! "$venv/bin/pip" install --disable-pip-version-check \
      -c constraints.txt -r "image-requirements-$image.txt" > "$venv.log" 2>&1; then
      cat "$venv.log" >&2
      exit 1
    fi
  )
  "$venv/bin/pip" check --disable-pip-version-check >&2
  # From elsewhere than the repository, so that nothing is imported from its source folders.
  (cd /tmp && "$venv/bin/python" -m "$package" --help >/dev/null)
  (cd /tmp && "$venv/bin/python" - "$package" <<'EOF'
import importlib
import pkgutil
import sys

# Scripts run by others than Python's import: alembic's env.py, the Triton python backend's model.py.
SKIP = (".migrations.env", ".python_backend.model")
name = sys.argv[1]
package = importlib.import_module(name)
modules = [m.name for m in pkgutil.walk_packages(package.__path__, f"{name}.") if not m.name.endswith(SKIP)]
for module in modules:
    importlib.import_module(module)
print(f"{name}: {len(modules) + 1} modules imported", file=sys.stderr)
EOF
  )
  site=$(echo "$venv"/lib/python3*/site-packages)
  size=$(du -sh "$site" | cut -f1)
  count=$("$venv/bin/pip" list --disable-pip-version-check --format=freeze 2>/dev/null | wc -l)
  summary+=("| $image | $size | $count |")
done

echo "| image | site-packages | distributions |"
echo "|---|---|---|"
printf '%s\n' "${summary[@]}"
