variable "name" {
  description = "The function folder whose web bundle this publishes (names the bucket and the distribution)."
  type        = string
}

variable "bundle" {
  description = "The folder `modelfn build FOLDER --target web` wrote (dist/<name>-web), with site.json."
  type        = string
}

variable "cdn" {
  description = "Serve through CloudFront (HTTPS, COOP/COEP for WebAssembly threads). false: the bucket alone, private (for tests)."
  type        = bool
  default     = true
}

variable "price_class" {
  description = "CloudFront price class: where the site is cached."
  type        = string
  default     = "PriceClass_100"
}
