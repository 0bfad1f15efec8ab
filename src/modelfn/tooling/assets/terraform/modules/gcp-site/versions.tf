terraform {
  required_version = ">= 1.5"
  # Checked offline against the provider's 8.7.0 schema (tests/infra/test_google_schema.py).
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 8.0, < 9.0"
    }
  }
}
