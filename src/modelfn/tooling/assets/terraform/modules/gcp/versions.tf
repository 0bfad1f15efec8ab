terraform {
  required_version = ">= 1.5"
  # Checked offline against the 8.7.0 schemas of both providers (tests/infra/test_google_schema.py);
  # a provider's major version is where it breaks configurations, so the range stops at the next.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 8.0, < 9.0"
    }
    # API Gateway resources exist only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 8.0, < 9.0"
    }
  }
}
