"""Pictures a person would rather look at than read: bird's-eye views, camera overlays, one-PNG frame figures."""
