"""What a function tells its operators: structured logs and Prometheus metrics."""
