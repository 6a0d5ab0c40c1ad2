"""Export bundles (PRODUCT.md "Export bundles"): a folder or .zip of CSVs and pricing.json, reconciled."""

from .reader import BundleResult, read_bundle
from .rows import ImportIssue
from .source import BundleError, BundleSource

__all__ = ["BundleError", "BundleResult", "BundleSource", "ImportIssue", "read_bundle"]
