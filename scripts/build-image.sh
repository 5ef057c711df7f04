#!/usr/bin/env bash
# Builds the sidecar image from Containerfile and tags it quarantine:<version> (the image
# deploy/kubernetes/ and `quarantine inject` reference), with the git commit baked into
# quarantine_build_info. Uses the first working engine of podman, docker, buildah.
#
#   scripts/build-image.sh                 # build quarantine:<version>
#   QUARANTINE_IMAGE=registry.example/quarantine:1 scripts/build-image.sh   # another tag
#   scripts/build-image.sh --check         # no engine needed: lint and consistency only
#
# Without a working engine (or with --check) it checks what can be checked without one:
# hadolint on the Containerfile, the build stage's compile command against RELEASE_BUILD
# (scripts/lib.sh), the non-root user, and that every manifest references the image this
# script tags. deploy/check.sh runs the --check part too.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

# The tag to build; the manifests are checked against the default, $IMAGE.
TAG="${QUARANTINE_IMAGE:-$IMAGE}"

check() {
    local bad=0
    grep -qxF "RUN $RELEASE_BUILD \\" Containerfile \
        || { echo "Containerfile: the build stage does not run '$RELEASE_BUILD'" >&2; bad=1; }
    [ "$(grep -c '^FROM ' Containerfile)" -ge 2 ] \
        || { echo "Containerfile: not multi-stage" >&2; bad=1; }
    grep -qx 'USER 65532:65532' Containerfile \
        || { echo "Containerfile: final stage must run as 65532:65532" >&2; bad=1; }
    grep -qx 'ENTRYPOINT \["/usr/local/bin/quarantine"\]' Containerfile \
        || { echo "Containerfile: the binary must be the entrypoint" >&2; bad=1; }
    local refs wrong
    refs="$(grep -rhoE 'image: *"?quarantine:[^" ]+' deploy/kubernetes | sort -u)"
    wrong="$(printf '%s\n' "$refs" | grep -vE "image: *\"?$IMAGE\$" || true)"
    if [ -z "$refs" ] || [ -n "$wrong" ]; then
        echo "deploy/kubernetes: manifests must reference $IMAGE, found: ${refs:-nothing}" >&2
        bad=1
    fi
    local hadolint
    hadolint="$(command -v hadolint || echo "$DEPLOY_VENV/bin/hadolint")"
    if [ -x "$hadolint" ]; then
        "$hadolint" Containerfile || bad=1
    elif [ "${QUARANTINE_DEPLOY_CHECK_STRICT:-0}" = 1 ]; then
        echo "hadolint missing (scripts/setup.sh installs it)" >&2
        bad=1
    else
        echo "hadolint missing (scripts/setup.sh installs it): Containerfile not linted" >&2
    fi
    return "$bad"
}

engine() {
    local e
    for e in podman docker buildah; do
        if command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1; then
            echo "$e"
            return
        fi
    done
}

if [ "${1:-}" = --check ]; then
    check
    echo "Containerfile checks passed ($IMAGE)"
    exit 0
fi

e="$(engine)"
if [ -z "$e" ]; then
    log "no working container engine (podman, docker or buildah): checking without one"
    check
    echo "Containerfile checks passed; image NOT built (no container engine)"
    exit 0
fi
check
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
log "$e build -t $TAG (commit $commit)"
if [ "$e" = buildah ]; then
    buildah bud -f Containerfile --build-arg "QUARANTINE_GIT_COMMIT=$commit" -t "$TAG" .
else
    "$e" build -f Containerfile --build-arg "QUARANTINE_GIT_COMMIT=$commit" -t "$TAG" .
    # The entrypoint is the binary: this prints its version.
    "$e" run --rm "$TAG" --version
fi
log "built $TAG"
