"""What a user looks at: a run's PNG plots (`cnnlab.visual.plots`), Grad-CAM heat-maps (`cnnlab.visual.gradcam`)."""
