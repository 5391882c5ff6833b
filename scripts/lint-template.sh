#!/usr/bin/env bash
# Lints the SAM template (template.yaml): cfn-lint, `sam validate --lint`, and cfn-lint again on
# the CloudFormation that SAM translates it into (so the IAM policies are checked too).
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

echo "== cfn-lint $("$venv/bin/cfn-lint" --version 2>&1 | awk '{print $NF}') template.yaml"
"$venv/bin/cfn-lint" template.yaml || status=1

echo "== sam validate --lint (aws-sam-cli $SAM_CLI_VERSION)"
# `sam validate` wants a region even offline; telemetry off so nothing phones home.
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 \
  "$venv/bin/sam" validate --lint --template template.yaml || status=1

echo "== cfn-lint on the template as SAM translates it (checks the IAM actions in Policies)"
# cfn-lint validates SAM resources against SAM's own schema and does not look inside the
# policies SAM turns into the function's role. Translating with SAM's translator (offline, the
# same one `sam deploy` runs server-side; parameter defaults; a placeholder code location) and
# linting the result checks every IAM action and resource there too.
translated="$(mktemp --suffix=.json)"
trap 'rm -f "$translated"' EXIT
if AWS_DEFAULT_REGION=us-east-1 "$venv/bin/python" - template.yaml "$translated" <<'PY'
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

if [[ $status -eq 0 ]]; then
  echo "lint-template: OK"
else
  echo "lint-template: FAILED" >&2
fi
exit "$status"
