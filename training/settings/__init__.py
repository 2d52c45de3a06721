"""A run's configuration: the YAML file, flags and --set resolved into one config saved beside the
outputs (config), and the range every size, count and rate of it must be in (config_bounds)."""
