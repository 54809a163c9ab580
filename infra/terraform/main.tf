# Root example: healer as a Fargate service fed by EventBridge through SQS, with
# its DynamoDB store, a notification topic and an admin token; optionally the
# demo workloads that mirror the seed scenarios.

data "aws_caller_identity" "current" {}

module "store" {
  source = "./modules/store"

  table_prefix = var.name
}

module "events" {
  source = "./modules/events"

  name                           = var.name
  max_receive_count              = var.max_receive_count
  delivery_retry_attempts        = var.delivery_retry_attempts
  delivery_max_event_age_seconds = var.delivery_max_event_age_seconds
}

resource "aws_sns_topic" "notifications" {
  name              = "${var.name}-notifications"
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sns_topic_subscription" "email" {
  count = var.notification_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.notifications.arn
  protocol  = "email"
  endpoint  = var.notification_email
}

module "service" {
  source = "./modules/service"

  name               = var.name
  region             = var.region
  account_id         = data.aws_caller_identity.current.account_id
  image              = var.image
  vpc_id             = var.vpc_id
  subnet_ids         = var.subnet_ids
  assign_public_ip   = var.assign_public_ip
  desired_count      = var.desired_count
  cpu                = var.cpu
  memory             = var.memory
  log_retention      = var.log_retention_days
  governor_json      = var.governor_json
  aws_facts          = var.aws_facts
  poll_target_groups = var.poll_target_groups
  poll_instances     = var.poll_instances
  live               = var.live
  notify_topic_arn   = aws_sns_topic.notifications.arn
  queue_url          = module.events.queue_url
  queue_arn          = module.events.queue_arn
  table_prefix       = var.name
  table_arns         = module.store.table_arns
}

module "demo" {
  count  = var.enable_demo ? 1 : 0
  source = "./modules/demo"

  name             = "${var.name}-demo"
  vpc_id           = var.vpc_id
  subnet_ids       = var.subnet_ids
  instance_ami     = var.demo_instance_ami
  failure_rate     = var.demo_failure_rate
  alarm_topic_arns = [aws_sns_topic.notifications.arn]
}
