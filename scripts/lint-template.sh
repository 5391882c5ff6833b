#!/usr/bin/env bash
# Lints the CloudFormation templates offline:
#   - template.yaml (the suite, SAM): cfn-lint, `sam validate --lint`, and cfn-lint again on the
#     CloudFormation that SAM translates it into (so the IAM policies are checked too);
#   - every examples/*/template.yaml: cfn-lint (plus the two SAM steps if one uses the SAM
#     transform);
#   - examples/sample-app: its JSON and YAML files parse, its scripts pass `bash -n`, and, when a
#     built smoke-test-hook binary is there (scripts/test.sh builds it first), smoke-spec.json passes
#     the hook's own spec validation.
# Warnings fail the lint like errors. A rule a template must break is ignored in that resource's
# Metadata (cfn-lint: config: ignore_checks), with a comment saying why; never globally.
#
# Both tools run offline and need no AWS credentials; only the first run needs PyPI, to install
# them. They live in their own virtualenv, `.venv-sam` at the repo root, kept apart from `.venv`
# (the local AWS test bed) because aws-sam-cli pins a boto3/botocore that would downgrade moto's.
#
# Usage: scripts/lint-template.sh            (from any directory)
#        PYTHON=python3.12 scripts/lint-template.sh   (choose the interpreter for a new venv)
set -euo pipefail

# Pinned versions. cfn-lint is pinned to the version the test bed uses; aws-sam-cli is pinned to a
# release whose own cfn-lint requirement accepts that version (pip fails loudly if not).
CFN_LINT_VERSION="1.58.0"
SAM_CLI_VERSION="1.170.0"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv=".venv-sam"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "lint-template: creating $venv" >&2
  "$python" -m venv "$venv"
  # Keep the venv out of git without touching .gitignore (Python >= 3.13 does this itself).
  printf '*\n' > "$venv/.gitignore"
fi

# The installed version of a distribution, or nothing when it is missing.
installed_version() {
  "$venv/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PY
}

if [[ "$(installed_version cfn-lint)" != "$CFN_LINT_VERSION" \
   || "$(installed_version aws-sam-cli)" != "$SAM_CLI_VERSION" ]]; then
  echo "lint-template: installing cfn-lint==$CFN_LINT_VERSION aws-sam-cli==$SAM_CLI_VERSION into $venv" >&2
  start=$SECONDS
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cfn-lint==$CFN_LINT_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
  echo "lint-template: installed in $((SECONDS - start)) s" >&2
fi

status=0
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
cfn_lint_version="$("$venv/bin/cfn-lint" --version 2>&1 | awk '{print $NF}')"

# cfn-lint on one template.
lint_cfn() {
  echo "== cfn-lint $cfn_lint_version $1"
  "$venv/bin/cfn-lint" "$1" || status=1
}

# A SAM template: cfn-lint, `sam validate --lint`, then cfn-lint on its translation.
lint_sam() {
  local template="$1"
  lint_cfn "$template"

  echo "== sam validate --lint (aws-sam-cli $SAM_CLI_VERSION) $template"
  # `sam validate` wants a region even offline; telemetry off so nothing phones home.
  SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 \
    "$venv/bin/sam" validate --lint --template "$template" || status=1

  echo "== cfn-lint on $template as SAM translates it (checks the IAM actions in Policies)"
  # cfn-lint validates SAM resources against SAM's own schema and does not look inside the
  # policies SAM turns into the function's role. Translating with SAM's translator (offline, the
  # same one `sam deploy` runs server-side; parameter defaults; a placeholder code location) and
  # linting the result checks every IAM action and resource there too.
  local translated
  translated="$workdir/$(printf '%s' "$template" | tr '/' '_').translated.json"
  if AWS_DEFAULT_REGION=us-east-1 "$venv/bin/python" - "$template" "$translated" <<'PY'
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

template = yaml_parse(open(sys.argv[1]).read())
for resource in template.get("Resources", {}).values():
    if resource.get("Type") == "AWS::Serverless::Function":
        # `sam build` replaces the local CodeUri with the built artifact; stand in for it.
        resource["Properties"]["CodeUri"] = "s3://placeholder-bucket/placeholder.zip"


class NoManagedPolicyLookup:
    # Policies name managed policies by ARN here; nothing needs looking up in IAM.
    def load(self):
        return {}


with open(sys.argv[2], "w") as out:
    json.dump(transform(template, {}, NoManagedPolicyLookup()), out, indent=1)
PY
  then
    "$venv/bin/cfn-lint" "$translated" || status=1
  else
    status=1
  fi
}

lint_sam template.yaml

# --- examples/ --------------------------------------------------------------------------------
shopt -s nullglob
for template in examples/*/template.yaml; do
  if grep -q 'AWS::Serverless-2016-10-31' "$template"; then
    lint_sam "$template"
  else
    lint_cfn "$template"
  fi
done

if [[ -d examples/sample-app ]]; then
  echo "== examples/sample-app: JSON and YAML parse, scripts pass bash -n"
  "$venv/bin/python" - examples/sample-app <<'PY' || status=1
import json, pathlib, sys
import yaml  # PyYAML, a cfn-lint dependency

root = pathlib.Path(sys.argv[1])
failed = False
for path in sorted(root.glob("*.json")):
    try:
        json.loads(path.read_text())
    except ValueError as e:
        print(f"{path}: not valid JSON: {e}")
        failed = True
for path in sorted(list(root.glob("*.yml")) + list(root.glob("*.yaml"))):
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        print(f"{path}: not valid YAML: {e}")
        failed = True
sys.exit(1 if failed else 0)
PY
  for script in examples/*.sh examples/sample-app/*.sh; do
    bash -n "$script" || status=1
  done

  # The spec must pass the hook's own parser (shared/src/smoke/spec.rs): the hook validates
  # SMOKE_SPEC_DEFAULT at start-up and logs a configuration error naming the variable when it does
  # not. No Lambda Runtime API listens on 127.0.0.1:1, so the binary stops right after that check.
  # A spec known to be bad is run first, to prove the check can fail.
  hook=""
  for candidate in target/debug/smoke-test-hook target/release/smoke-test-hook; do
    if [[ -x "$candidate" ]]; then hook="$candidate"; break; fi
  done
  if [[ -z "$hook" ]]; then
    echo "== examples/sample-app/smoke-spec.json: skipped the hook's validation (no built smoke-test-hook binary; cargo build --workspace --bins)"
  else
    echo "== examples/sample-app/smoke-spec.json: the hook's own validation ($hook)"
    spec_errors() {
      SMOKE_SPEC_DEFAULT="$1" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=lint AWS_SECRET_ACCESS_KEY=lint \
        AWS_LAMBDA_RUNTIME_API=127.0.0.1:1 AWS_LAMBDA_FUNCTION_NAME=lint \
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_VERSION=1 \
        timeout 20 "$hook" 2>&1 | grep 'SMOKE_SPEC_DEFAULT' || true
    }
    if [[ -z "$(spec_errors '{"checks": [{"path": "/", "bogus": 1}]}')" ]]; then
      echo "the hook did not report a known-bad spec: this check no longer works" >&2
      status=1
    else
      errors="$(spec_errors "$(cat examples/sample-app/smoke-spec.json)")"
      if [[ -n "$errors" ]]; then
        echo "$errors" >&2
        status=1
      fi
    fi
  fi
fi

if [[ $status -eq 0 ]]; then
  echo "lint-template: OK"
else
  echo "lint-template: FAILED" >&2
fi
exit "$status"
