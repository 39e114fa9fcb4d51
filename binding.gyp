# The byte pump (native/pump.c), built by `npm ci` through scripts/build-pump.mjs; Linux only.
{
  "targets": [
    {
      "target_name": "pump",
      "sources": ["native/pump.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
