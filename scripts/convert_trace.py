"""Convert a public trace into igniter's trace CSV (`timestamp,scale`, time-weighted mean scale 1).

    python scripts/convert_trace.py twitter ../shared/data/traces/twitter_trace_workload.tbz2 twitter.csv [--step 60]
    python scripts/convert_trace.py azure-llm ../shared/data/traces/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv azure.csv
    python scripts/convert_trace.py alibaba-pods ../shared/data/traces/alibaba-gpu-v2023/openb_pod_list_default.csv alibaba.csv --step 3600

The data stays where it is (../shared); the CSV written is yours. `igniter capacity --trace-format FORMAT` reads
the same files directly; converting once is for editing, trimming or feeding other tools. --step averages the
trace into fixed steps first (the Twitter trace is 1.9 million seconds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from igniter.atomic import atomic_write
from igniter.errors import UserError
from igniter.provisioning.traces import FORMATS, Trace, load_trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=sorted(set(FORMATS) - {"csv"}))
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--step", type=float, help="average into steps of this many seconds")
    args = parser.parse_args()
    try:
        trace = load_trace(args.source, args.format)
        if args.step:
            starts, values = trace.steps(args.step)
            trace = Trace(starts, trace.columns, values, trace.source)
        atomic_write(args.out, trace.to_csv())
    except UserError as err:
        sys.exit(f"error: {err.line()}")
    print(f"wrote {args.out}: {len(trace.times)} samples of {trace.source}")


if __name__ == "__main__":
    main()
