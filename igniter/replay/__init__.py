"""Replay: run a plan on local Triton servers serving emulated accelerators and measure the p99 it delivers.
Sits beside the deployment stage (it starts servers through igniter.deployment.apply.Deployer)."""
