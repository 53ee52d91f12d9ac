#!/usr/bin/env bash
# Print where the gateway's specification documents are, as one JSON object,
# and whether they are all there.
#
# Usage: .specify/scripts/bash/check-prerequisites.sh
#
# Exit status: 0 when every document exists and the two copies of the
# constitution are identical; 1 otherwise (the JSON still says what is wrong);
# 2 on a wrong argument.
set -euo pipefail

if [[ $# -gt 0 ]]; then
    case $1 in
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "check-prerequisites.sh: no arguments expected, got '$1'" >&2; exit 2 ;;
    esac
fi

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ROOT=$(repo_root)

PROMPT_STEPS=(constitution specify clarify plan tasks analyze implement)
TEMPLATES=(spec plan tasks checklist)

missing=()
need() {
    [[ -f "$ROOT/$1" ]] || missing+=("$1")
}

for doc in SPEC.md PLAN.md TASKS.md DISCLAIMER.md README.md \
           memory/constitution.md .specify/memory/constitution.md; do
    need "$doc"
done
templates=()
for name in "${TEMPLATES[@]}"; do
    need ".specify/templates/$name-template.md"
    templates+=("$ROOT/.specify/templates/$name-template.md")
done
prompts=()
for step in "${PROMPT_STEPS[@]}"; do
    need ".github/prompts/speckit.$step.prompt.md"
    prompts+=("$ROOT/.github/prompts/speckit.$step.prompt.md")
done

in_sync=false
if cmp -s "$ROOT/memory/constitution.md" "$ROOT/.specify/memory/constitution.md"; then
    in_sync=true
fi

cat <<JSON
{
  "repo_root": $(json_string "$ROOT"),
  "spec": $(json_string "$ROOT/SPEC.md"),
  "plan": $(json_string "$ROOT/PLAN.md"),
  "tasks": $(json_string "$ROOT/TASKS.md"),
  "disclaimer": $(json_string "$ROOT/DISCLAIMER.md"),
  "readme": $(json_string "$ROOT/README.md"),
  "constitution": $(json_string "$ROOT/memory/constitution.md"),
  "constitution_copy": $(json_string "$ROOT/.specify/memory/constitution.md"),
  "constitution_in_sync": $in_sync,
  "templates": $(json_array "${templates[@]}"),
  "prompts": $(json_array "${prompts[@]}"),
  "drift_test": $(json_string "$ROOT/tests/test_spec_drift.py"),
  "missing": $(json_array ${missing[@]+"${missing[@]}"})
}
JSON

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "check-prerequisites.sh: missing: ${missing[*]}" >&2
    exit 1
fi
if [[ $in_sync != true ]]; then
    echo "check-prerequisites.sh: memory/constitution.md and .specify/memory/constitution.md differ; copy the first over the second" >&2
    exit 1
fi
