"""Use cases. Each public function owns its transaction: it commits or rolls back before returning."""
