#!/usr/bin/env bash
# Zips examples/sample-app with a REVISION file and uploads it to an example stack's source bucket;
# the upload starts the stack's pipeline (an EventBridge rule on the object's "Object Created").
#
# REVISION is the image tag the build uses: the last git commit of examples/sample-app (12 hex digits),
# or, when the directory has uncommitted changes (trying out a broken release, say), a hash of its
# content (12 hex digits too). Either way a tag is never "latest", and the same content gets the
# same tag, so uploading it again reuses the image already in ECR (its tags are immutable).
#
# Usage: examples/upload-sample-app.sh STACK_NAME       zip, then upload to the stack's bucket
#        examples/upload-sample-app.sh --zip-only FILE  only write the zip (no AWS access)
# Needs python3, and the AWS CLI with credentials for the upload.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
app="$here/sample-app"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
zip_only=""
stack=""
case "$1" in
  --zip-only) [ $# -eq 2 ] || usage; zip_only="$2" ;;
  -h|--help) usage ;;
  *) [ $# -eq 1 ] || usage; stack="$1" ;;
esac

# --- the revision ------------------------------------------------------------------------------------
revision=""
if git -C "$app" rev-parse --git-dir > /dev/null 2>&1; then
  if [ -z "$(git -C "$app" status --porcelain -- .)" ]; then
    # The last commit that changed the app (not HEAD): other changes to the repository do not
    # rebuild an identical image.
    revision="$(git -C "$app" log -1 --format=%H -- . | cut -c1-12)"
    [ -n "$revision" ] && echo "revision $revision (the last git commit of examples/sample-app)"
  fi
fi
if [ -z "$revision" ]; then
  revision="$(python3 - "$app" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
h = hashlib.sha256()
for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d != "dist")
    for name in sorted(filenames):
        if name in ("REVISION", ".build.env"):
            continue
        path = os.path.join(dirpath, name)
        h.update(os.path.relpath(path, root).encode() + b"\0")
        h.update(open(path, "rb").read() + b"\0")
print(h.hexdigest()[:12])
PY
)"
  echo "revision $revision (content hash: examples/sample-app has uncommitted changes, or is not in git)"
fi

# --- the zip -----------------------------------------------------------------------------------------
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
zip_path="${zip_only:-$workdir/sample-app.zip}"
python3 - "$app" "$zip_path" "$revision" <<'PY'
import os, sys, zipfile
root, out, revision = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "dist")
        for name in sorted(filenames):
            if name in ("REVISION", ".build.env"):
                continue
            path = os.path.join(dirpath, name)
            info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, root))
            with open(path, "rb") as f:
                z.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
    info = zipfile.ZipInfo("REVISION", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o100644 << 16
    z.writestr(info, revision + "\n", zipfile.ZIP_DEFLATED)
    print("zipped", len(z.namelist()), "files:", " ".join(sorted(z.namelist())))
PY
if [ -n "$zip_only" ]; then
  echo "wrote $zip_only"
  exit 0
fi

# --- the upload --------------------------------------------------------------------------------------
output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
bucket="$(output SourceBucketName)"
key="$(output SourceObjectKey)"
if [ -z "$bucket" ] || [ "$bucket" = None ] || [ -z "$key" ] || [ "$key" = None ]; then
  echo "stack $stack has no SourceBucketName / SourceObjectKey outputs: is it one of examples/*/template.yaml?" >&2
  exit 1
fi
aws s3 cp "$zip_path" "s3://$bucket/$key"
echo "uploaded s3://$bucket/$key (revision $revision): the pipeline starts in a few seconds"
echo "watch it: aws codepipeline get-pipeline-state --name \"\$(aws cloudformation describe-stacks --stack-name $stack --query \"Stacks[0].Outputs[?OutputKey=='PipelineName'].OutputValue\" --output text)\""
