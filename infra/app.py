"""CDK entry point: `cdk synth -c env=dev|prod` (or `python -m infra.app`). Needs no AWS access."""

from __future__ import annotations

from importlib.metadata import version

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import ENVIRONMENTS
from infra.stack import MlcycleStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    env_name = app.node.try_get_context("env") or "dev"
    if env_name not in ENVIRONMENTS:
        raise SystemExit(f"unknown env {env_name!r}; choose one of {sorted(ENVIRONMENTS)}")
    MlcycleStack(
        app,
        f"mlcycle-{env_name}",
        config=ENVIRONMENTS[env_name],
        code_version=version("mlcycle"),
        description=f"mlcycle: the machine-learning lifecycle, serverless ({env_name})",
    )
    # Any AwsSolutions finding not acknowledged (with a reason, on the narrowest construct)
    # fails the synth: a new finding cannot slip in unnoticed.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
