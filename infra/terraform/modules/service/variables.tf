variable "name" {
  description = "Name prefix."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "account_id" {
  description = "AWS account id (scopes the ECS read permission)."
  type        = string
}

variable "image" {
  description = "healer container image."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the tasks."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give tasks a public IP."
  type        = bool
}

variable "desired_count" {
  description = "Running tasks."
  type        = number
}

variable "cpu" {
  description = "Task CPU units."
  type        = number
}

variable "memory" {
  description = "Task memory, MiB."
  type        = number
}

variable "log_retention" {
  description = "Log retention, days."
  type        = number
}

variable "governor_json" {
  description = "Governor limits JSON, or empty."
  type        = string
}

variable "aws_facts" {
  description = "Read resource facts from the AWS APIs."
  type        = bool
}

variable "live" {
  description = "Act (HEALER_LIVE); false keeps every step a dry run."
  type        = bool
}

variable "notify_topic_arn" {
  description = "SNS topic of the default notification channel (HEALER_NOTIFY_DEFAULT)."
  type        = string
}

variable "queue_url" {
  description = "Events queue URL."
  type        = string
}

variable "queue_arn" {
  description = "Events queue ARN."
  type        = string
}

variable "table_prefix" {
  description = "DynamoDB table prefix."
  type        = string
}

variable "table_arns" {
  description = "DynamoDB table ARNs."
  type        = list(string)
}

variable "poll_target_groups" {
  description = "Target group ARNs whose targets' health healer polls (empty: off)."
  type        = list(string)
}

variable "poll_instances" {
  description = "Poll the status checks of running instances carrying the opt-in tag."
  type        = bool
}
