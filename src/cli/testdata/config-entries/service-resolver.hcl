Kind           = "service-resolver"
Name           = "api"
DefaultSubset  = "v1"
ConnectTimeout = "15s"
Subsets = {
  v1 = {
    Filter = "Service.Meta.version == v1"
  }
  v2 = {
    Filter      = "Service.Meta.version == v2"
    OnlyPassing = true
  }
}
Failover = {
  "*" = {
    Datacenters = ["dc2", "dc3"]
  }
  v2 = {
    Targets = [
      { Datacenter = "dc3", ServiceSubset = "v2" },
    ]
  }
}
LoadBalancer {
  Policy = "ring_hash"
  HashPolicies = [
    { Field = "header", FieldValue = "x-user-id" },
  ]
}
