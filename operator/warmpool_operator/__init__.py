"""warmpool operator: reconciles WarmPool resources into runtime pods and scales them."""
