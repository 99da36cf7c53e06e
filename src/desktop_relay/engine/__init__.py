"""The container engine: the provisioning interface the relay asks of an engine, and its Docker
implementation.

`interface` holds IContainerProvisioner, IEventFollower and IImagePull with their values, labels and
exceptions; `docker` the Docker SDK provisioner and its client; `docker_events` the follower of
the engine's event stream; `docker_sweeper` the removal of containers of timed-out starts;
`_docker_common` what those three share. An in-memory provisioner for tests is tests/fakes.py;
both are held to the same behaviour by tests/provisioner_contract.py.
"""

from .docker import DockerProvisioner, docker_threadpool
from .interface import (
    DESKTOP_PORT,
    LABEL_DESKTOP,
    LABEL_INSTANCE,
    LABEL_OWNER,
    LABEL_PREFIX,
    LABEL_SESSION,
    ContainerEngineTimedOut,
    ContainerEngineUnavailable,
    ContainerEvent,
    ContainerInfo,
    ContainerSpec,
    ContainerStartFailed,
    DesktopImageMissing,
    EngineSummary,
    IContainerProvisioner,
    IEventFollower,
    IImagePull,
    ImagePullFailed,
)

__all__ = [
    "DESKTOP_PORT",
    "LABEL_DESKTOP",
    "LABEL_INSTANCE",
    "LABEL_OWNER",
    "LABEL_PREFIX",
    "LABEL_SESSION",
    "ContainerEngineTimedOut",
    "ContainerEngineUnavailable",
    "ContainerEvent",
    "ContainerInfo",
    "ContainerSpec",
    "ContainerStartFailed",
    "DesktopImageMissing",
    "DockerProvisioner",
    "EngineSummary",
    "IContainerProvisioner",
    "IEventFollower",
    "IImagePull",
    "ImagePullFailed",
    "docker_threadpool",
]
