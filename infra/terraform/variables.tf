variable "name" {
  description = "Name prefix of every resource, and the DynamoDB table prefix (tables are <name>-incidents, ...)."
  type        = string
  default     = "healer"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into; healer heals resources in this region."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1."
  }
}

variable "image" {
  description = "Container image of healer (built from infra/Dockerfile and pushed to ECR), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/healer:0.1.0."
  type        = string

  validation {
    condition     = length(var.image) > 0 && !endswith(var.image, ":latest")
    error_message = "image must be set, and pinned to a tag or digest other than :latest."
  }
}

variable "vpc_id" {
  description = "VPC of the service's tasks (and of the demo workloads)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets of the service's tasks. Private subnets with a NAT gateway or VPC endpoints (SQS, DynamoDB, ECR, CloudWatch Logs, EC2, ECS) are recommended."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must list at least one subnet id (subnet-...)."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "desired_count" {
  description = "Running tasks. Replicas share the store, so every governor limit holds across them."
  type        = number
  default     = 1

  validation {
    condition     = var.desired_count >= 1 && var.desired_count <= 10
    error_message = "desired_count must be between 1 and 10."
  }
}

variable "cpu" {
  description = "Task CPU units. 512 (half a vCPU) is ample: a decision takes ~20 us and a governor verdict ~5 us (README Benchmarks), so ingestion is bound by SQS long-polling, not CPU."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.cpu)
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048 or 4096."
  }
}

variable "memory" {
  description = "Task memory, MiB. 1024 covers 16 concurrent policy instances at their 16 MiB cap plus the host."
  type        = number
  default     = 1024

  validation {
    condition     = var.memory >= 512 && var.memory <= 30720
    error_message = "memory must be between 512 and 30720 MiB."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of the service's logs, days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 3653)."
  }
}

variable "governor_json" {
  description = "Governor limits as JSON (GovernorConfig, kebab-case; README 'Safety governor'). Empty keeps the defaults, which include dry-run."
  type        = string
  default     = ""

  validation {
    condition     = var.governor_json == "" || can(jsondecode(var.governor_json))
    error_message = "governor_json must be empty or valid JSON."
  }
}

variable "live" {
  description = "Live mode: execute approved steps through the AWS APIs (HEALER_LIVE). Default false: every approved step is recorded as the request it would send."
  type        = bool
  default     = false
}

variable "aws_facts" {
  description = "Read resource facts (tags, group sizes) from the AWS APIs. Off, the opt-in and blast-radius rules deny for lack of facts."
  type        = bool
  default     = true
}

variable "max_receive_count" {
  description = "Deliveries of an event before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "delivery_retry_attempts" {
  description = "EventBridge retries of an event it could not deliver to the queue (0-185) before the event goes to the delivery dead-letter queue."
  type        = number
  default     = 185

  validation {
    condition     = var.delivery_retry_attempts >= 0 && var.delivery_retry_attempts <= 185
    error_message = "delivery_retry_attempts must be between 0 and 185."
  }
}

variable "delivery_max_event_age_seconds" {
  description = "How long EventBridge keeps retrying one event, seconds (60-86400). One hour by default: an older event goes to the delivery dead-letter queue for a human rather than triggering a late heal."
  type        = number
  default     = 3600

  validation {
    condition     = var.delivery_max_event_age_seconds >= 60 && var.delivery_max_event_age_seconds <= 86400
    error_message = "delivery_max_event_age_seconds must be between 60 and 86400."
  }
}

variable "notification_email" {
  description = "Email address subscribed to the notification topic (confirm the subscription email). Empty: no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.notification_email == "" || can(regex("^[^@\\s]+@[^@\\s]+$", var.notification_email))
    error_message = "notification_email must be empty or an email address."
  }
}

variable "enable_demo" {
  description = "Create the demo workloads of the seed scenarios: a fragile Lambda with its Errors alarm, an EC2 instance tagged SelfHeal=true with an Elastic IP and a StatusCheckFailed alarm, and an ECS service behind an ALB."
  type        = bool
  default     = false
}

variable "demo_instance_ami" {
  description = "AMI of the demo EC2 instance (any small Linux AMI of the region). Required when enable_demo is true."
  type        = string
  default     = ""

  validation {
    condition     = var.demo_instance_ami == "" || can(regex("^ami-[0-9a-f]+$", var.demo_instance_ami))
    error_message = "demo_instance_ami must be empty or an AMI id (ami-...)."
  }
}

variable "demo_failure_rate" {
  description = "FAILURE_RATE of the demo Lambda: the share of invocations that fail (0 to 1)."
  type        = number
  default     = 0.5

  validation {
    condition     = var.demo_failure_rate >= 0 && var.demo_failure_rate <= 1
    error_message = "demo_failure_rate must be between 0 and 1."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "poll_target_groups" {
  description = "Target group ARNs whose targets' health healer polls every 15 s (README 'Pollers'). Empty: off."
  type        = list(string)
  default     = []
}

variable "poll_instances" {
  description = "Poll the status checks of running instances tagged with the opt-in tag (SelfHeal=true)."
  type        = bool
  default     = false
}
