"""Speed benchmarks against peers. Each reports ratios measured side by side in one process run."""
