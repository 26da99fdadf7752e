-- Applied writes per member by the version they replaced: how a restart decides whether a write
-- that was in flight when the service died landed on the platform.
CREATE INDEX loyalty_change_member ON loyalty_change (member_id, expected_version)
    WHERE state = 'applied';
