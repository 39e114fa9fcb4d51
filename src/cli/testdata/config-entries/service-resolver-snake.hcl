kind            = "service-resolver"
name            = "api"
default_subset  = "v1"
connect_timeout = "15s"
subsets = {
  v1 = {
    filter = "Service.Meta.version == v1"
  }
  v2 = {
    filter       = "Service.Meta.version == v2"
    only_passing = true
  }
}
failover = {
  "*" = {
    datacenters = ["dc2", "dc3"]
  }
  v2 = {
    targets = [
      { datacenter = "dc3", service_subset = "v2" },
    ]
  }
}
load_balancer {
  policy = "ring_hash"
  hash_policies = [
    { field = "header", field_value = "x-user-id" },
  ]
}
