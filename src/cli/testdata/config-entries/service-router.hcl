Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
        Header = [
          {
            Name  = "x-debug"
            Exact = "1"
          },
        ]
      }
    }
    Destination {
      Service            = "admin"
      PrefixRewrite      = "/"
      RequestTimeout     = "2s"
      NumRetries         = 3
      RetryOnStatusCodes = [503]
    }
  },
]
