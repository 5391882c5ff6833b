#!/usr/bin/env bash
# The sample app's build, run by buildspec.yml in CodeBuild (kept in a script so that it runs under
# `set -euo pipefail` without leaking those options into CodeBuild's own shell, and so that it can be
# tried locally with stand-ins for `aws` and `docker` on PATH).
#
# 1. Tag: the source revision, never "latest": the REVISION file of the source bundle (written by
#    examples/upload-sample-app.sh from `git rev-parse`), else CODEBUILD_RESOLVED_SOURCE_VERSION when
#    it is a git commit (a CodeConnections or CodeCommit source). 7 to 40 hex digits: a tag the
#    image gate's default tag pattern accepts.
# 2. Build and push <repository>:<tag> with APP_VERSION=<tag> baked in (/version answers it: the
#    smoke spec's version proof). The repository's tags are IMMUTABLE, so a tag is built once: when
#    it is already in ECR (a re-run of the pipeline, or the same commit uploaded again) the build
#    reuses that image instead of failing on the push.
# 3. Wait for the scan on push, so the image gate finds a finished scan (it refuses an unfinished
#    one, and says so).
# 4. Write the deploy inputs into dist/ (the build's output artifact):
#      imageDetail.json       {ImageURI, ImageDigest, ImageTags}: what the image gate checks, and the
#                             image CodeDeployToECS writes into taskdef.json's <IMAGE1_NAME>
#      imagedefinitions.json  [{name, imageUri}]: what the ECS deploy action ships
#      taskdef.json, appspec.yaml   (DEPLOY_MODE=codedeploy) with this stack's values filled in
# 5. Publish smoke-spec.json to the SSM parameter the smoke hook reads for this service: last, once
#    everything else succeeded. Keep a spec change compatible with the version it replaces: the
#    alarm-rollback router redeploys the previous version through the same hook and spec.
#
# Environment (set on the CodeBuild project by examples/*/template.yaml):
#   REPOSITORY_URI        <account>.dkr.ecr.<region>.amazonaws.com/<repository>
#   CONTAINER_NAME        the container of the task definition (web)
#   DEPLOY_MODE           codedeploy | ecs
#   SMOKE_SPEC_PARAMETER  SSM parameter name of this service's smoke spec (empty: not published)
#   codedeploy only:      TASK_FAMILY, EXECUTION_ROLE_ARN, LOG_GROUP, SMOKE_TEST_HOOK_FUNCTION
#   AWS_REGION            set by CodeBuild
# Output: dist/ and .build.env (IMAGE_TAG, IMAGE_URI, IMAGE_DIGEST, for the buildspec's
# exported-variables).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

fail() { echo "build: $*" >&2; exit 1; }

for v in REPOSITORY_URI CONTAINER_NAME DEPLOY_MODE AWS_REGION; do
  [ -n "${!v:-}" ] || fail "$v is not set (the CodeBuild project's environment)"
done
case "$DEPLOY_MODE" in
  codedeploy)
    for v in TASK_FAMILY EXECUTION_ROLE_ARN LOG_GROUP SMOKE_TEST_HOOK_FUNCTION; do
      [ -n "${!v:-}" ] || fail "$v is not set (needed with DEPLOY_MODE=codedeploy)"
    done ;;
  ecs) ;;
  *) fail "DEPLOY_MODE must be codedeploy or ecs, found \"$DEPLOY_MODE\"" ;;
esac
python3 -c 'import json; json.load(open("smoke-spec.json"))' \
  || fail "smoke-spec.json is not valid JSON"

# --- 1. the tag ------------------------------------------------------------------------------------
if [ -s REVISION ]; then
  IMAGE_TAG="$(tr -d '[:space:]' < REVISION)"
  echo "build: tag $IMAGE_TAG (from the REVISION file)"
elif [[ "${CODEBUILD_RESOLVED_SOURCE_VERSION:-}" =~ ^[0-9a-f]{40}$ ]]; then
  IMAGE_TAG="${CODEBUILD_RESOLVED_SOURCE_VERSION:0:12}"
  echo "build: tag $IMAGE_TAG (from the source commit)"
else
  fail "no source revision: the bundle has no REVISION file and the source version" \
       "(${CODEBUILD_RESOLVED_SOURCE_VERSION:-none}) is not a git commit; upload the source" \
       "with examples/upload-sample-app.sh"
fi
[[ "$IMAGE_TAG" =~ ^[0-9a-f]{7,40}$ ]] \
  || fail "the tag \"$IMAGE_TAG\" is not a git SHA (7 to 40 lowercase hex digits)"
REPOSITORY_NAME="${REPOSITORY_URI#*/}"
REGISTRY="${REPOSITORY_URI%%/*}"
IMAGE_URI="$REPOSITORY_URI:$IMAGE_TAG"

# --- 2. build and push, or reuse the image the tag already names ------------------------------------
if found="$(aws ecr describe-images --repository-name "$REPOSITORY_NAME" \
              --image-ids imageTag="$IMAGE_TAG" 2>&1)"; then
  echo "build: $IMAGE_URI is already in ECR (tags are immutable): reusing it"
elif [[ "$found" == *ImageNotFoundException* ]]; then
  aws ecr get-login-password --region "$AWS_REGION" \
    | docker login --username AWS --password-stdin "$REGISTRY"
  docker build --pull --build-arg APP_VERSION="$IMAGE_TAG" -t "$IMAGE_URI" .
  docker push "$IMAGE_URI"
else
  fail "could not look up $IMAGE_URI in ECR: $found"
fi
IMAGE_DIGEST="$(aws ecr describe-images --repository-name "$REPOSITORY_NAME" \
  --image-ids imageTag="$IMAGE_TAG" --query 'imageDetails[0].imageDigest' --output text)"
[[ "$IMAGE_DIGEST" =~ ^sha256:[0-9a-f]{64}$ ]] \
  || fail "ECR gave no digest for $IMAGE_URI (found \"$IMAGE_DIGEST\")"
echo "build: $IMAGE_URI is $IMAGE_DIGEST"

# --- 3. the scan on push -----------------------------------------------------------------------------
# The waiter polls every 5 s for up to 5 minutes. A scan still running, or failed, is not a build
# error: the image gate refuses the image with that reason, in the pipeline's console.
aws ecr wait image-scan-complete --repository-name "$REPOSITORY_NAME" \
    --image-id imageTag="$IMAGE_TAG" \
  || echo "build: the scan of $IMAGE_URI has not completed; the image gate will say so"

# --- 4. the deploy inputs ----------------------------------------------------------------------------
rm -rf dist
mkdir -p dist
printf '{"ImageURI": "%s", "ImageDigest": "%s", "ImageTags": ["%s"]}\n' \
  "$IMAGE_URI" "$IMAGE_DIGEST" "$IMAGE_TAG" > dist/imageDetail.json
printf '[{"name": "%s", "imageUri": "%s"}]\n' "$CONTAINER_NAME" "$IMAGE_URI" \
  > dist/imagedefinitions.json
if [ "$DEPLOY_MODE" = codedeploy ]; then
  sed -e "s|<TASK_FAMILY>|$TASK_FAMILY|g" \
      -e "s|<EXECUTION_ROLE_ARN>|$EXECUTION_ROLE_ARN|g" \
      -e "s|<LOG_GROUP>|$LOG_GROUP|g" \
      -e "s|<AWS_REGION>|$AWS_REGION|g" \
      taskdef.json > dist/taskdef.json
  sed -e "s|<SMOKE_TEST_HOOK_FUNCTION>|$SMOKE_TEST_HOOK_FUNCTION|g" appspec.yaml > dist/appspec.yaml
  # Only the placeholders CodeDeployToECS fills itself may remain.
  left="$(cat dist/taskdef.json dist/appspec.yaml | grep -Eo '<[A-Z0-9_]+>' \
          | grep -Ev '^<(IMAGE1_NAME|TASK_DEFINITION)>$' | sort -u | tr '\n' ' ' || true)"
  [ -z "$left" ] || fail "placeholders left unfilled: $left"
fi
for f in dist/*.json; do
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$f" || fail "$f is not valid JSON"
done
printf 'export IMAGE_TAG=%q IMAGE_URI=%q IMAGE_DIGEST=%q\n' \
  "$IMAGE_TAG" "$IMAGE_URI" "$IMAGE_DIGEST" > .build.env

# --- 5. the smoke spec -------------------------------------------------------------------------------
if [ -n "${SMOKE_SPEC_PARAMETER:-}" ]; then
  aws ssm put-parameter --name "$SMOKE_SPEC_PARAMETER" --type String --overwrite \
    --value file://smoke-spec.json > /dev/null
  echo "build: smoke spec published to $SMOKE_SPEC_PARAMETER"
fi
echo "build: done; deploy inputs:"
ls -1 dist
