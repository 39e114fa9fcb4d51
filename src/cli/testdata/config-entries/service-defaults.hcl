Kind     = "service-defaults"
Name     = "web"
Protocol = "http"
MeshGateway {
  Mode = "local"
}
UpstreamConfig {
  Defaults {
    ConnectTimeoutMs = 5000
    Limits {
      MaxConnections = 512
    }
    PassiveHealthCheck {
      Interval                = "10s"
      MaxFailures             = 5
      EnforcingConsecutive5xx = 100
    }
  }
}
Meta {
  owner_team = "payments"
}
