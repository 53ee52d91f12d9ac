#!/usr/bin/env bash
# Start work on an issue: make a draft folder with the spec, plan, tasks and
# checklist templates filled in, and print where everything is as JSON.
#
# Usage: .specify/scripts/bash/setup-feature.sh ISSUE SHORT-NAME
#   ISSUE       the issue number (a positive integer)
#   SHORT-NAME  lowercase words joined by hyphens, e.g. audit-log
#
# The drafts go to .specify/drafts/<ISSUE as three digits>-<SHORT-NAME>/ and
# are not committed: what they settle is folded into SPEC.md, PLAN.md and
# TASKS.md. An existing draft folder is never overwritten (exit 1).
# Exit status 2 on wrong arguments.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

if [[ ${1-} == -h || ${1-} == --help ]]; then usage; exit 0; fi
if [[ $# -ne 2 ]]; then usage >&2; exit 2; fi
issue=$1 name=$2
if ! [[ $issue =~ ^[1-9][0-9]*$ ]]; then
    echo "setup-feature.sh: ISSUE must be a positive integer, got '$issue'" >&2; exit 2
fi
if ! [[ $name =~ ^[a-z0-9]+(-[a-z0-9]+)*$ ]]; then
    echo "setup-feature.sh: SHORT-NAME must be lowercase words joined by hyphens, got '$name'" >&2; exit 2
fi

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ROOT=$(repo_root)
TEMPLATES="$ROOT/.specify/templates"
for doc in SPEC.md TASKS.md; do
    [[ -f "$ROOT/$doc" ]] || { echo "setup-feature.sh: $doc is missing" >&2; exit 1; }
done

# Requirement numbers of this issue are FR-<issue><two digits>; take the next free one.
fr_prefix="FR-$issue"
last_fr=$(grep -oE "\bFR-$issue[0-9]{2}\b" "$ROOT/SPEC.md" | sed "s/^FR-$issue//" | sort -n | tail -n 1 || true)
next_fr=$(printf '%s%02d' "$fr_prefix" $((10#${last_fr:-0} + 1)))

# Task ids are global: the next one after the highest in TASKS.md.
last_task=$(grep -oE '\bT[0-9]{3,}\b' "$ROOT/TASKS.md" | sed 's/^T//' | sort -n | tail -n 1 || true)
next_task=$(printf 'T%03d' $((10#${last_task:-0} + 1)))

dir="$ROOT/.specify/drafts/$(printf '%03d' "$issue")-$name"
if [[ -e $dir ]]; then
    echo "setup-feature.sh: $dir already exists; edit it, or remove it to start again" >&2
    exit 1
fi
mkdir -p "$dir"

today=$(date -u +%Y-%m-%d)
files=()
for kind in spec plan tasks checklist; do
    target="$dir/$kind.md"
    sed -e "s/{{ISSUE}}/$issue/g" -e "s/{{SHORT_NAME}}/$name/g" \
        -e "s/{{FR_PREFIX}}/$fr_prefix/g" -e "s/{{NEXT_FR}}/$next_fr/g" \
        -e "s/{{NEXT_TASK}}/$next_task/g" -e "s/{{DATE}}/$today/g" \
        "$TEMPLATES/$kind-template.md" > "$target"
    files+=("$target")
done

cat <<JSON
{
  "issue": $issue,
  "short_name": $(json_string "$name"),
  "draft_dir": $(json_string "$dir"),
  "spec_draft": $(json_string "${files[0]}"),
  "plan_draft": $(json_string "${files[1]}"),
  "tasks_draft": $(json_string "${files[2]}"),
  "checklist": $(json_string "${files[3]}"),
  "fr_prefix": $(json_string "$fr_prefix"),
  "next_fr": $(json_string "$next_fr"),
  "next_task": $(json_string "$next_task"),
  "spec": $(json_string "$ROOT/SPEC.md"),
  "plan": $(json_string "$ROOT/PLAN.md"),
  "tasks": $(json_string "$ROOT/TASKS.md"),
  "constitution": $(json_string "$ROOT/memory/constitution.md")
}
JSON
