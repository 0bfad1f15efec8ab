variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  description = "The function folder whose web bundle this publishes (names the bucket)."
  type        = string
}

variable "bundle" {
  description = "The folder `modelfn build FOLDER --target web` wrote (dist/<name>-web), with site.json."
  type        = string
}

variable "domain" {
  description = "A domain of yours for the site: adds an HTTPS load balancer with Cloud CDN and COOP/COEP (WebAssembly threads). Empty: the bucket's own URL, one thread."
  type        = string
  default     = ""
}
