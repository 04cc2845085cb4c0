"""The node agent's (tests/k8s/agent.py) $(VAR) expansion and mount-path rewriting: what lets a pod spec written for
a container run as a plain process. Kubernetes' rules: a defined $(VAR) is replaced, an undefined one stays, $$ is $."""

from __future__ import annotations

from pathlib import Path

from tests.k8s.agent import _expand, _rewrite

MOUNTS = {"/var/run/openrr/pod": Path("/t/pod"), "/var/run/openrr": Path("/t/all"), "/tmp/openrr": Path("/t/scratch")}


def test_expansion_follows_kubernetes() -> None:
    env = {"NODE_IP": "127.0.1.1"}
    assert _expand("--bind=$(NODE_IP)", env) == "--bind=127.0.1.1"
    assert _expand("$(MISSING)-$(NODE_IP)", env) == "$(MISSING)-127.0.1.1"
    assert _expand("$$(NODE_IP) costs $$5", env) == "$(NODE_IP) costs $5"


def test_mount_paths_are_rewritten_as_whole_components_longest_first() -> None:
    assert _rewrite("--secret-file=/var/run/openrr/pod/control-secret", MOUNTS) == "--secret-file=/t/pod/control-secret"
    assert _rewrite("/var/run/openrr/sts/key.pem", MOUNTS) == "/t/all/sts/key.pem"
    assert _rewrite("--ports-file=/tmp/openrr/ports.json", MOUNTS) == "--ports-file=/t/scratch/ports.json"
    assert _rewrite("/tmp/openrr", MOUNTS) == "/t/scratch"
    # Not a path component of a mount: left alone.
    for text in ("/tmp/openrr2/x", "/x/tmp/openrr/y", "relative/tmp/openrr", "/var/run/openrr.d"):
        assert _rewrite(text, MOUNTS) == text


def test_a_replacement_is_not_rewritten_again() -> None:
    # The agent's root may itself lie under a mount path (e.g. /tmp/openrr/...).
    mounts = {"/var/run/openrr/pod": Path("/tmp/openrr/agent/pod"), "/tmp/openrr": Path("/tmp/openrr/agent/scratch")}
    assert _rewrite("/var/run/openrr/pod/tls.key", mounts) == "/tmp/openrr/agent/pod/tls.key"
