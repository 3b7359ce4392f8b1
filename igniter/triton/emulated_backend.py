"""Triton python-backend model of an emulated accelerator: holds each batch for the time a table says, by sleeping.

Copied as ``model.py`` into every emulated model's version directory by igniter.replay.emulator; its spec is the
config's parameter ``emulation`` (JSON), so a live reload of a new config brings a new table:
  time_scale   K: every hold is the table's latency x K (the replay divides measured times by K);
  latency_ms   latency_ms[n - 1][mask]: batch latency (ms, unscaled) of a batch of n samples while the partners
               whose bits are set in ``mask`` are busy (bit i = partners[i]);
  busy_file    one byte per server on the same emulated GPU; this server's byte is 1 while it holds a batch;
  slot         this server's byte; partners: the partners' bytes, in mask bit order;
  slice_ms     how often (real ms) a held batch re-reads which partners are busy;
  slowdown_file, gpu_slot  a float64 per emulated GPU: this GPU's is the factor an injected neighbour slows every
               batch by (1.0: none), re-read every slice like the busy partners;
  overhead_file  (optional) 8 bytes, a float64: the real ms the path adds to every batch outside the sleep
               (Triton -> stub IPC, the wake-up), measured live by the replay on its zero-latency probe; a batch
               sleeps that much less, so it holds the instance for the table's time and not the time + the path.
Interference is only applied while a partner is busy: a batch advances at rate 1 / latency(n, busy partners) and
re-reads the busy set every slice, so a partner that starts or stops mid-batch speeds it up or slows it down for
the part that overlaps. Sleeping costs no CPU, so a dozen emulated GPUs fit on a small host.
"""

import json
import mmap
import os
import struct
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        spec = json.loads(json.loads(args["model_config"])["parameters"]["emulation"]["string_value"])
        self.scale = float(spec["time_scale"])
        self.table = [[float(x) / 1000.0 * self.scale for x in row] for row in spec["latency_ms"]]
        self.slot = int(spec["slot"])
        self.partners = [int(p) for p in spec["partners"]]
        self.slice_s = float(spec.get("slice_ms", 2.0)) / 1000.0
        self.fd = os.open(spec["busy_file"], os.O_RDWR)
        self.busy = mmap.mmap(self.fd, 0)
        self.slowdown_fd = os.open(spec["slowdown_file"], os.O_RDONLY)
        self.slowdown = mmap.mmap(self.slowdown_fd, 0, prot=mmap.PROT_READ)
        self.gpu_offset = 8 * int(spec["gpu_slot"])
        self.overhead = None
        if spec.get("overhead_file"):
            with open(spec["overhead_file"], "rb") as fh:
                self.overhead = mmap.mmap(fh.fileno(), 8, access=mmap.ACCESS_READ)

    def _overhead_s(self):
        return max(struct.unpack("d", self.overhead[:8])[0], 0.0) / 1000.0 if self.overhead is not None else 0.0

    def _mask(self):
        return sum(1 << i for i, p in enumerate(self.partners) if self.busy[p])

    def _factor(self):
        return struct.unpack_from("<d", self.slowdown, self.gpu_offset)[0]

    def _hold(self, n):
        row = self.table[min(n, len(self.table)) - 1]
        latency = row[self._mask()] * self._factor()
        # fraction of the batch's work still to do: the path's own time per batch counts as done
        remaining = 1.0 - self._overhead_s() / latency if latency > 0 else 0.0
        while remaining > 1e-9:
            latency = row[self._mask()] * self._factor()
            if latency <= 0:
                return
            start = time.perf_counter()
            time.sleep(min(remaining * latency, self.slice_s))
            remaining -= (time.perf_counter() - start) / latency  # an oversleep counts as work done

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() for r in requests]
        self.busy[self.slot] = 1
        try:
            self._hold(sum(a.shape[0] for a in arrays))
        finally:
            self.busy[self.slot] = 0
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", np.zeros_like(a, dtype=np.float32))])
                for a in arrays]

    def finalize(self):
        if self.overhead is not None:
            self.overhead.close()
        self.busy.close()
        os.close(self.fd)
        self.slowdown.close()
        os.close(self.slowdown_fd)
