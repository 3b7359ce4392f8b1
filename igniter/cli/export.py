"""`igniter export kubernetes`: a plan as manifests for a Kubernetes cluster (docs/kubernetes.md)."""

from __future__ import annotations

from pathlib import Path

import click

from igniter.cli.common import emit, json_option, table, user_errors
from igniter.deployment.kubernetes import DEFAULT_IMAGE, DEFAULT_MODEL_STORE, ExportOptions, export_kubernetes
from igniter.errors import UserError


@click.group()
def export() -> None:
    """Write a plan in another system's format."""


@export.command("kubernetes")
@click.argument("plan", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory for the manifests.")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Triton server image.")
@click.option("--namespace", help="Namespace of every object (default: kubectl's current one).")
@click.option("--model-store", default=DEFAULT_MODEL_STORE, show_default=True,
              help="Source model repository: pvc://CLAIM[/SUBPATH] or image:///PATH (inside --image).")
@click.option("--gpu-product", "gpu_products", multiple=True, metavar="TYPE=VALUE",
              help="nvidia.com/gpu.product node label value of a plan GPU type (default: the type, spaces as '-').")
@json_option
@user_errors
def kubernetes(plan: Path, out: Path, image: str, namespace: str | None, model_store: str,
               gpu_products: tuple[str, ...], as_json: bool) -> None:
    """Write PLAN (plan.json or its directory) as Kubernetes manifests with a kustomization.yaml."""
    options = ExportOptions(image=image, namespace=namespace, model_store=model_store,
                            gpu_products=tuple(_pair(p) for p in gpu_products))
    summary = export_kubernetes(plan, out, options)
    given = {gpu_type for gpu_type, _ in options.gpu_products}
    for row in {r["type"]: r for r in summary["servers"] if r["node"].startswith("nvidia.com")}.values():
        if row["type"] not in given:
            click.echo(f"note: {row['type']} servers go to nodes labelled {row['node']}; if yours carry another "
                       f"value, pass --gpu-product '{row['type']}=VALUE'", err=True)
    if image == DEFAULT_IMAGE and model_store == DEFAULT_MODEL_STORE:
        click.echo(f"note: the stock Triton image has no {DEFAULT_MODEL_STORE[len('image://'):]}: give --model-store "
                   "pvc://CLAIM[/SUBPATH], or an --image that contains your model repository", err=True)
    emit(summary, as_json, lambda r: table(r["servers"]) + f"\n{len(r['files'])} files in {r['out']}; "
         f"apply with: kubectl apply -k {r['out']}")


def _pair(text: str) -> tuple[str, str]:
    gpu_type, sep, product = text.partition("=")
    if not sep or not gpu_type:
        raise UserError(f"--gpu-product {text!r} is not TYPE=VALUE", "write e.g. --gpu-product V100=Tesla-V100-SXM2-16GB")
    return gpu_type, product
