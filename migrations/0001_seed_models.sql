-- The default model registry of the API contract. Prices are micro-USD per 1M tokens
-- (cache-hit input / cache-miss input / output); off-peak (16:30-00:30 UTC) discounts in percent.
INSERT INTO `models` (`id`, `owned_by`, `context_length`, `default_max_tokens`, `max_max_tokens`, `max_reasoning_tokens`, `is_reasoner`, `supports_tools`, `supports_json_output`, `supports_fim`, `cache_hit_price`, `cache_miss_price`, `output_price`, `off_peak_discount_percent`)
VALUES ('deepseek-chat', 'deepseek', 65536, 4096, 8192, 0, 0, 1, 1, 1, 70000, 270000, 1100000, 50);
--> statement-breakpoint
INSERT INTO `models` (`id`, `owned_by`, `context_length`, `default_max_tokens`, `max_max_tokens`, `max_reasoning_tokens`, `is_reasoner`, `supports_tools`, `supports_json_output`, `supports_fim`, `cache_hit_price`, `cache_miss_price`, `output_price`, `off_peak_discount_percent`)
VALUES ('deepseek-reasoner', 'deepseek', 65536, 4096, 8192, 32768, 1, 0, 0, 0, 140000, 550000, 2190000, 75);
