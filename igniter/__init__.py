"""igniter: interference-aware provisioning control plane for NVIDIA Triton Inference Server.

Pipeline (imports flow one way):
    triton  <-  profiling  <-  model  <-  provisioning  <-  deployment  <-  cli
"""

__version__ = "0.1.0"
