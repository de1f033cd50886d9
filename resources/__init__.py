"""cellosign-iac: Cellosign secrets and webhooks as code."""
