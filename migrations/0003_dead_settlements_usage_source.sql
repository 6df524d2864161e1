CREATE TABLE `dead_settlements` (
	`request_id` text PRIMARY KEY NOT NULL,
	`account_id` text NOT NULL,
	`settlement` text NOT NULL,
	`attempts` integer NOT NULL,
	`dead_at` integer NOT NULL,
	`resettled_at` integer
);
--> statement-breakpoint
ALTER TABLE `usage_records` ADD `usage_source` text DEFAULT 'upstream' NOT NULL;