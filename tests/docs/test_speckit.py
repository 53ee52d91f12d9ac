"""The project documents around SPEC.md: constitution, scripts, prompts, tasks, CI.

The scripts run for real (bash, via subprocess), in the repository or in a
copy of its documents under a temporary folder when a test needs to break or
write something.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(".specify/scripts/bash")
PROMPT_STEPS = ("constitution", "specify", "clarify", "plan", "tasks", "analyze", "implement")
DOCUMENTS = ("SPEC.md", "PLAN.md", "TASKS.md", "DISCLAIMER.md", "README.md")


def run(root: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The documents, constitution, templates, scripts and prompts, copied elsewhere."""
    for name in DOCUMENTS:
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("memory", ".specify", ".github"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("drafts"))
    return tmp_path


# ------------------------------------------------------------------ constitution


def test_constitution_copy_is_identical():
    original = (ROOT / "memory/constitution.md").read_bytes()
    assert (ROOT / ".specify/memory/constitution.md").read_bytes() == original


def test_constitution_is_versioned_and_every_rule_has_a_must_and_a_reason():
    text = (ROOT / "memory/constitution.md").read_text()
    version = re.search(r"^Version (\d+\.\d+\.\d+)", text, re.M)
    assert version, "the constitution states no version"
    assert f"| {version.group(1)} |" in text, "the amendment log has no line for this version"
    rules = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(rules) >= 10
    for rule in rules:
        title = rule.splitlines()[0]
        assert re.match(r"C\d+\. ", title), title
        assert "MUST" in rule, f"rule {title!r} has no MUST"
        assert "*Why:*" in rule, f"rule {title!r} gives no reason"


def test_plan_checks_every_constitution_rule():
    rules = re.findall(r"^### (C\d+)\. ", (ROOT / "memory/constitution.md").read_text(), re.M)
    plan = (ROOT / "PLAN.md").read_text()
    check = plan[plan.index("## Constitution check") :]
    for rule in rules:
        assert re.search(rf"^\| {rule} ", check, re.M), f"PLAN.md's constitution check skips {rule}"


# ------------------------------------------------------------------- the scripts


def test_check_prerequisites_prints_the_document_paths_as_json():
    result = run(ROOT, "check-prerequisites.sh")
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)
    assert Path(paths["repo_root"]) == ROOT
    for key, name in [
        ("spec", "SPEC.md"),
        ("plan", "PLAN.md"),
        ("tasks", "TASKS.md"),
        ("disclaimer", "DISCLAIMER.md"),
        ("constitution", "memory/constitution.md"),
        ("constitution_copy", ".specify/memory/constitution.md"),
    ]:
        assert Path(paths[key]) == ROOT / name
        assert Path(paths[key]).is_file()
    assert paths["missing"] == [] and paths["constitution_in_sync"] is True
    assert [Path(p).name for p in paths["prompts"]] == [
        f"speckit.{step}.prompt.md" for step in PROMPT_STEPS
    ]
    assert all(Path(p).is_file() for p in paths["templates"] + paths["prompts"])


def test_check_prerequisites_fails_on_a_missing_document_or_a_stale_copy(project_copy):
    (project_copy / "PLAN.md").unlink()
    with (project_copy / ".specify/memory/constitution.md").open("a") as copy:
        copy.write("\nAn edit made only here.\n")
    result = run(project_copy, "check-prerequisites.sh")
    assert result.returncode == 1
    paths = json.loads(result.stdout)
    assert paths["missing"] == ["PLAN.md"]
    assert paths["constitution_in_sync"] is False
    assert "PLAN.md" in result.stderr


def test_check_prerequisites_refuses_unknown_arguments():
    result = run(ROOT, "check-prerequisites.sh", "--bogus")
    assert result.returncode == 2 and "--bogus" in result.stderr


def test_setup_feature_fills_the_templates_with_the_next_numbers(project_copy):
    tasks = (project_copy / "TASKS.md").read_text()
    highest = max(int(n) for n in re.findall(r"\bT(\d{3,})\b", tasks))
    with (project_copy / "SPEC.md").open("a") as spec:
        spec.write("\n- **FR-1201** an earlier one.\n")

    result = run(project_copy, "setup-feature.sh", "12", "audit-log")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    draft = project_copy / ".specify/drafts/012-audit-log"
    assert Path(out["draft_dir"]) == draft
    assert (out["fr_prefix"], out["next_fr"]) == ("FR-12", "FR-1202")
    assert out["next_task"] == f"T{highest + 1:03d}"
    for kind in ("spec", "plan", "tasks"):
        assert Path(out[f"{kind}_draft"]) == draft / f"{kind}.md"
    for kind in ("spec", "plan", "tasks", "checklist"):
        text = (draft / f"{kind}.md").read_text()
        assert "{{" not in text, f"{kind}.md keeps a placeholder"
        assert "Issue 12: audit-log" in text
    assert "FR-1202" in (draft / "spec.md").read_text()
    assert f"T{highest + 1:03d}" in (draft / "tasks.md").read_text()


def test_setup_feature_never_overwrites_a_draft(project_copy):
    assert run(project_copy, "setup-feature.sh", "5", "routing").returncode == 0
    spec = project_copy / ".specify/drafts/005-routing/spec.md"
    spec.write_text("work in progress")
    again = run(project_copy, "setup-feature.sh", "5", "routing")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert spec.read_text() == "work in progress"


@pytest.mark.parametrize(
    "args", [(), ("12",), ("twelve", "audit-log"), ("12", "Audit Log"), ("0", "x")]
)
def test_setup_feature_refuses_bad_arguments(project_copy, args):
    result = run(project_copy, "setup-feature.sh", *args)
    assert result.returncode == 2
    assert not (project_copy / ".specify/drafts").exists()


def test_setup_feature_numbers_the_first_requirement_of_an_issue_01(project_copy):
    result = run(project_copy, "setup-feature.sh", "99", "first")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["next_fr"] == "FR-9901"


def test_drafts_are_not_committed():
    assert ".specify/drafts/" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------------- prompts


def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text()
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, f"{path.name} has no front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


@pytest.mark.parametrize("step", PROMPT_STEPS)
def test_each_prompt_has_a_description_and_a_numbered_procedure_for_this_project(step):
    meta, body = front_matter(ROOT / f".github/prompts/speckit.{step}.prompt.md")
    assert isinstance(meta.get("description"), str) and len(meta["description"]) > 40
    numbered = re.findall(r"^(\d+)\. ", body[body.index("## Procedure") :], re.M)
    assert numbered == [str(n) for n in range(1, len(numbered) + 1)] and len(numbered) >= 5
    assert "check-prerequisites.sh" in body
    assert re.search(r"SPEC\.md|PLAN\.md|TASKS\.md|constitution", body)


# -------------------------------------------------------------------- templates


@pytest.mark.parametrize("kind", ["spec", "plan", "tasks", "checklist"])
def test_templates_carry_the_placeholders_setup_fills(kind):
    text = (ROOT / f".specify/templates/{kind}-template.md").read_text()
    assert "{{ISSUE}}" in text and "{{SHORT_NAME}}" in text
    unknown = set(re.findall(r"\{\{(\w+)\}\}", text)) - {
        "ISSUE", "SHORT_NAME", "FR_PREFIX", "NEXT_FR", "NEXT_TASK", "DATE",
    }  # fmt: skip
    assert not unknown


# ----------------------------------------------------------------------- tasks


def test_task_ids_are_unique_and_in_order():
    ids = [
        int(n) for n in re.findall(r"^- \[[ x]\] T(\d{3,}) ", (ROOT / "TASKS.md").read_text(), re.M)
    ]
    assert ids == list(range(1, len(ids) + 1))


def test_every_file_a_ticked_task_names_exists():
    for line in (ROOT / "TASKS.md").read_text().splitlines():
        if not line.startswith("- [x] "):
            continue
        for name in re.findall(r"`([^`\s]+)`", line):
            if "/" in name or re.search(r"\.(py|md|json|txt|yml)$", name):
                assert (ROOT / name).exists(), f"ticked task names missing {name}: {line}"


# ------------------------------------------------------------------- CI and README


def readme_test_command() -> str:
    """README's command that installs the test requirements and runs the suite, without its comment."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(
        r"^(pip install -r requirements-dev\.txt.* && [^#]+?)\s*(?:#.*)?$", readme, re.M
    )
    assert len(commands) == 1, "README should give exactly one test command"
    return str(commands[0])


def test_ci_workflow_runs_the_readme_test_command_with_redis():
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and "pull_request" in triggers
    (job,) = workflow["jobs"].values()
    assert job["services"]["redis"]["image"] == "redis:7"
    assert job["env"]["REDIS_URL"].startswith("redis://")
    assert readme_test_command() in [step.get("run") for step in job["steps"]]


def test_ci_script_runs_the_same_tests():
    script = (ROOT / ".ci/run").read_text()
    install, test = readme_test_command().split(" && ")
    assert install in script and test in script


def test_readme_links_the_specification_and_the_plan():
    readme = (ROOT / "README.md").read_text()
    assert "](SPEC.md)" in readme and "](PLAN.md)" in readme
