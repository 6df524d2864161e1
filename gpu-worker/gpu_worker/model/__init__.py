"""DeepSeek-V3 architecture: config, MLA, DeepSeekMoE, checkpoint loading. See README.md here."""
