output "cluster_name" {
  description = "ECS cluster running healer."
  value       = module.service.cluster_name
}

output "service_name" {
  description = "ECS service of healer."
  value       = module.service.service_name
}

output "queue_url" {
  description = "SQS queue the EventBridge rules deliver to (HEALER_SQS_QUEUE_URL)."
  value       = module.events.queue_url
}

output "dead_letter_queue_url" {
  description = "Dead-letter queue: events healer could not read or record after max_receive_count deliveries."
  value       = module.events.dead_letter_queue_url
}

output "delivery_dead_letter_queue_url" {
  description = "Delivery dead-letter queue: events EventBridge could not deliver to the queue within its retry policy."
  value       = module.events.delivery_dead_letter_queue_url
}

output "table_prefix" {
  description = "DynamoDB table prefix (HEALER_TABLE_PREFIX)."
  value       = var.name
}

output "notification_topic_arn" {
  description = "SNS topic for notifications."
  value       = aws_sns_topic.notifications.arn
}

output "admin_token_parameter" {
  description = "SSM parameter holding the admin token (SecureString)."
  value       = module.service.admin_token_parameter
}

output "log_group" {
  description = "CloudWatch Logs group of the service."
  value       = module.service.log_group
}

output "task_role_arn" {
  description = "The task role: exactly the API actions healer calls."
  value       = module.service.task_role_arn
}

output "demo" {
  description = "Demo workloads (when enable_demo)."
  value       = var.enable_demo ? module.demo[0].summary : null
}
