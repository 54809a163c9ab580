# Demo workloads mirroring the seed scenarios, each wired to an alarm whose
# state changes reach healer through the cloudwatch-alarm rule:
#   - a fragile Lambda (FAILURE_RATE) with its Errors alarm;
#   - an EC2 instance tagged SelfHeal=true with an Elastic IP and a
#     StatusCheckFailed alarm (replace keeps the address);
#   - an ECS service behind an ALB (task crashes, failed health checks).

variable "name" {
  description = "Name prefix of the demo resources."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the demo workloads."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets (two or more in different AZs, for the ALB)."
  type        = list(string)
}

variable "instance_ami" {
  description = "AMI of the demo instance."
  type        = string

  validation {
    condition     = length(var.instance_ami) > 0
    error_message = "demo_instance_ami is required with enable_demo."
  }
}

variable "failure_rate" {
  description = "FAILURE_RATE of the fragile Lambda."
  type        = number
}

variable "alarm_topic_arns" {
  description = "Where the demo alarms also notify humans."
  type        = list(string)
}

# ---- fragile Lambda ----

data "archive_file" "fragile" {
  type        = "zip"
  source_file = "${path.module}/lambda/fragile.py"
  output_path = "${path.module}/.build/fragile.zip"
}

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fragile" {
  name               = "${var.name}-fragile"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

resource "aws_iam_role_policy_attachment" "fragile_logs" {
  role       = aws_iam_role.fragile.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_lambda_function" "fragile" {
  #checkov:skip=CKV_AWS_117:Demo function calls no VPC resource; a VPC would only add ENIs and NAT cost.
  #checkov:skip=CKV_AWS_116:Demo function is invoked synchronously; failures are the point and are counted by its Errors alarm, not queued.
  #checkov:skip=CKV_AWS_173:FAILURE_RATE is not a secret; the default Lambda key encrypts it at rest.
  #checkov:skip=CKV_AWS_272:Demo code is packaged from this repository by Terraform; code signing adds a signing profile for no security gain here.
  function_name                  = "${var.name}-fragile"
  role                           = aws_iam_role.fragile.arn
  runtime                        = "python3.12"
  handler                        = "fragile.handler"
  filename                       = data.archive_file.fragile.output_path
  source_code_hash               = data.archive_file.fragile.output_base64sha256
  timeout                        = 5
  reserved_concurrent_executions = 5

  environment {
    variables = { FAILURE_RATE = tostring(var.failure_rate) }
  }

  tracing_config {
    mode = "Active"
  }
}

resource "aws_cloudwatch_metric_alarm" "fragile_errors" {
  alarm_name          = "${var.name}-fragile-errors"
  alarm_description   = "Errors of the fragile demo Lambda (healer: lambda-failure-rate)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.fragile.function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
}

# ---- EC2 instance, opted in, with an Elastic IP ----

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# SSM lets healer's diagnostics (and an operator) reach the instance without SSH.
resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role_policy_attachment" "instance_ssm" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
}

resource "aws_instance" "opted_in" {
  ami                  = var.instance_ami
  iam_instance_profile = aws_iam_instance_profile.instance.name
  instance_type        = "t3.micro"
  subnet_id            = var.subnet_ids[0]
  monitoring           = true
  ebs_optimized        = true

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  root_block_device {
    encrypted = true
  }

  tags = {
    Name     = "${var.name}-opted-in"
    SelfHeal = "true"
  }
}

resource "aws_eip" "opted_in" {
  domain   = "vpc"
  instance = aws_instance.opted_in.id
}

resource "aws_cloudwatch_metric_alarm" "status_check" {
  alarm_name          = "${var.name}-status-check-failed"
  alarm_description   = "Status checks of the opted-in demo instance (healer: ec2-replace)."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  dimensions          = { InstanceId = aws_instance.opted_in.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
}

# ---- ECS service behind an ALB ----

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Demo ALB: HTTP in from the VPC, out to the demo tasks."
  vpc_id      = var.vpc_id

  ingress {
    description = "HTTP from inside the VPC"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.this.cidr_block]
  }

  egress {
    description = "To the demo tasks"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.this.cidr_block]
  }
}

resource "aws_security_group" "web" {
  name        = "${var.name}-web"
  description = "Demo tasks: HTTP from the ALB; HTTPS out for image pulls."
  vpc_id      = var.vpc_id

  ingress {
    description     = "HTTP from the ALB"
    from_port       = 80
    to_port         = 80
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }

  egress {
    description = "HTTPS for image pulls and logs"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

resource "aws_lb" "web" {
  #checkov:skip=CKV_AWS_91:Demo load balancer; access logs need a bucket and policy that the demo does not justify.
  #checkov:skip=CKV_AWS_150:Demo load balancer is disposable; deletion protection would block terraform destroy.
  #checkov:skip=CKV2_AWS_28:Internal demo load balancer; a WAF adds cost without a public surface to protect.
  #checkov:skip=CKV2_AWS_20:Internal demo load balancer serves plain HTTP inside the VPC; there is no certificate to redirect to.
  name                       = "${var.name}-web"
  internal                   = true
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
}

resource "aws_lb_target_group" "web" {
  #checkov:skip=CKV_AWS_378:Internal demo target group: plain HTTP between the internal ALB and the tasks inside the VPC.
  name        = "${var.name}-web"
  port        = 80
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path     = "/"
    interval = 10
  }
}

resource "aws_lb_listener" "web" {
  #checkov:skip=CKV_AWS_2:Internal demo listener inside the VPC; no certificate is provisioned for it.
  #checkov:skip=CKV_AWS_103:Plain HTTP listener; TLS policy does not apply.
  load_balancer_arn = aws_lb.web.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.web.arn
  }
}

resource "aws_ecs_cluster" "demo" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "web_execution" {
  name               = "${var.name}-web-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy_attachment" "web_execution" {
  role       = aws_iam_role.web_execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_ecs_task_definition" "web" {
  #checkov:skip=CKV_AWS_336:Stock nginx writes its cache and pid under /var; this demo task exists to crash and be healed.
  family                   = "${var.name}-web"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.web_execution.arn

  container_definitions = jsonencode([
    {
      name         = "web"
      image        = "public.ecr.aws/nginx/nginx:1.27"
      essential    = true
      portMappings = [{ containerPort = 80, protocol = "tcp" }]
    }
  ])
}

resource "aws_ecs_service" "web" {
  name            = "${var.name}-web"
  cluster         = aws_ecs_cluster.demo.id
  task_definition = aws_ecs_task_definition.web.arn
  desired_count   = 3
  launch_type     = "FARGATE"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets         = var.subnet_ids
    security_groups = [aws_security_group.web.id]
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.web.arn
    container_name   = "web"
    container_port   = 80
  }

  depends_on = [aws_lb_listener.web]
}

output "summary" {
  description = "What the demo created."
  value = {
    lambda_function  = aws_lambda_function.fragile.function_name
    instance_id      = aws_instance.opted_in.id
    elastic_ip       = aws_eip.opted_in.public_ip
    web_service      = aws_ecs_service.web.name
    web_target_group = aws_lb_target_group.web.arn
  }
}
