#!/usr/bin/env bash
# Install the pinned developer/CI tools into <repo>/.cache/bin and print their paths.
#
# Today that is only helm (v3), used by tests/deploy/test_helm_chart.py for `helm lint` and
# `helm template`. It is built from source with `go install` through the Go module proxy,
# because that is the one channel a fresh CI machine is guaranteed to reach; no binary
# downloads from other hosts. Idempotent: when .cache/bin/helm already reports the pinned
# version nothing is built. The first build takes a few minutes (module download + compile);
# the Go build and module caches make later rebuilds fast.
#
# Usage: bash dev/install_tools.sh          (from any cwd)
# Env:   GO=/path/to/go   override the go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

HELM_VERSION="v3.22.0"  # bump deliberately; tests pin behaviour (lint --strict, schema errors) to it
# Kubernetes version helm assumes when no --kube-version is given: release builds derive it
# from the k8s.io/client-go version in helm's go.mod (v0.37.0 -> 1.37). Keep in step on a bump.
HELM_K8S_MAJOR="1"
HELM_K8S_MINOR="37"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/.cache/bin"
HELM="${BIN_DIR}/helm"

log() { printf 'install_tools: %s\n' "$*" >&2; }

find_go() {
    if [[ -n "${GO:-}" ]]; then
        printf '%s\n' "${GO}"
    elif command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        printf '%s\n' /usr/local/go/bin/go
    else
        return 1
    fi
}

helm_version() {
    # prints e.g. v3.22.0, or nothing when the binary is missing or broken
    [[ -x "${HELM}" ]] || return 0
    "${HELM}" version --template '{{ .Version }}' 2>/dev/null || true
}

install_helm() {
    local current
    current="$(helm_version)"
    if [[ "${current}" == "${HELM_VERSION}" ]]; then
        log "helm ${HELM_VERSION} already installed"
        return 0
    fi
    local go_bin
    if ! go_bin="$(find_go)"; then
        log "ERROR: go not found (needed to build helm ${HELM_VERSION}); install Go >= 1.26 or set GO=..."
        exit 1
    fi
    log "building helm ${HELM_VERSION} with $("${go_bin}" version) (was: ${current:-absent}) ..."
    mkdir -p "${BIN_DIR}"
    local started=${SECONDS}
    # The ldflags are those of helm's own Makefile: without them `helm version` says "v3.22"
    # and the default Kubernetes version for lint/template is 1.20.
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    local pkg
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X ${pkg}.k8sVersionMajor=${HELM_K8S_MAJOR} -X ${pkg}.k8sVersionMinor=${HELM_K8S_MINOR}"
    done
    GOBIN="${BIN_DIR}" CGO_ENABLED=0 "${go_bin}" install -trimpath -ldflags "${ldflags}" \
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
    current="$(helm_version)"
    if [[ "${current}" != "${HELM_VERSION}" ]]; then
        log "ERROR: built helm reports version '${current}', expected ${HELM_VERSION}"
        exit 1
    fi
    log "helm ${HELM_VERSION} built in $((SECONDS - started))s"
}

install_helm
printf '%s\n' "${HELM}"
