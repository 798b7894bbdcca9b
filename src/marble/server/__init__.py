"""HTTP API and web page over MarblePipeline (`marble serve`); see docs/serving.md."""
