kind     = "service-defaults"
name     = "web"
protocol = "http"
mesh_gateway {
  mode = "local"
}
upstream_config {
  defaults {
    connect_timeout_ms = 5000
    limits {
      max_connections = 512
    }
    passive_health_check {
      interval                  = "10s"
      max_failures              = 5
      enforcing_consecutive_5xx = 100
    }
  }
}
meta {
  owner_team = "payments"
}
