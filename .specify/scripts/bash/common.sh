#!/usr/bin/env bash
# Shared helpers for the .specify scripts; sourced, not run.

# The repository root: three levels above this file (.specify/scripts/bash).
repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)
}

# A JSON string literal for $1 (quotes, backslashes and control characters escaped).
json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# A JSON array of strings from the arguments.
json_array() {
    local out="[" sep=""
    local item
    for item in "$@"; do
        out+="$sep$(json_string "$item")"
        sep=", "
    done
    printf '%s]' "$out"
}
