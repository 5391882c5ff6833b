//! Finding what to test from trusted AWS state: the listener that serves the new version, and
//! the version itself.
//!
//! CodeDeploy: deployment → deployment group → target group pair → test route (production
//! route when the running event is AfterAllowTraffic) → listener → load balancer DNS name.
//! ECS: service → load balancer `advancedConfiguration` → test (or production) listener rule →
//! listener → load balancer. The version comes from the new task definition's image.

use std::sync::OnceLock;

use regex_lite::Regex;

use crate::aws::describe_sdk_error;
use crate::text::quote;
use crate::version::ImageVersion;

/// The AWS clients the smoke hook uses, built once in `main`.
#[derive(Clone, Debug)]
pub struct Clients {
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: crate::s3get::S3Reader,
    /// SSM parameters and Secrets Manager secrets (specs, secret header values).
    pub params: crate::awsjson::ParamsAndSecrets,
}

/// What the CodeDeploy deployment says about itself.
#[derive(Debug, Clone)]
pub struct CodeDeployFacts {
    pub application: String,
    pub deployment_group: String,
    pub status: String,
    pub creator: String,
    /// The lifecycle event now InProgress on the deployment's ECS target.
    pub lifecycle_event: Result<String, String>,
    pub ecs_service: Option<(String, String)>,
    /// Listener ARNs of the production and test routes.
    pub prod_listeners: Vec<String>,
    pub test_listeners: Vec<String>,
    pub image: Result<ImageVersion, String>,
}

impl CodeDeployFacts {
    /// A deployment CodeDeploy created to roll back another one.
    pub fn is_rollback(&self) -> bool {
        self.creator == "codeDeployRollback"
    }
}

/// Reads the deployment, its group, its running lifecycle event and the new image.
pub async fn codedeploy_facts(c: &Clients, deployment_id: &str) -> Result<CodeDeployFacts, String> {
    // The running event needs only the deployment id: it is read alongside the deployment and
    // its group, which saves two round trips on the way to the verdict.
    let (read, event) = tokio::join!(
        deployment_and_group(c, deployment_id),
        running_event(c, deployment_id)
    );
    let (info, group, image) = read?;
    let application = info.application_name().unwrap_or_default().to_string();
    let deployment_group = info.deployment_group_name().unwrap_or_default().to_string();
    let g = group.deployment_group_info();
    let pair = g
        .and_then(|g| g.load_balancer_info())
        .and_then(|l| l.target_group_pair_info_list().first());
    let listeners = |route: Option<&aws_sdk_codedeploy::types::TrafficRoute>| -> Vec<String> {
        route
            .map(|r| r.listener_arns().to_vec())
            .unwrap_or_default()
    };
    Ok(CodeDeployFacts {
        status: info
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        creator: info
            .creator()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        lifecycle_event: event,
        ecs_service: g
            .and_then(|g| g.ecs_services().first())
            .and_then(|s| Some((s.cluster_name()?.to_string(), s.service_name()?.to_string()))),
        prod_listeners: listeners(pair.and_then(|p| p.prod_traffic_route())),
        test_listeners: listeners(pair.and_then(|p| p.test_traffic_route())),
        application,
        deployment_group,
        image,
    })
}

type DeploymentAndGroup = (
    aws_sdk_codedeploy::types::DeploymentInfo,
    aws_sdk_codedeploy::operation::get_deployment_group::GetDeploymentGroupOutput,
    Result<ImageVersion, String>,
);

/// GetDeployment, then its group and the new image (from the AppSpec's task definition)
/// together.
async fn deployment_and_group(
    c: &Clients,
    deployment_id: &str,
) -> Result<DeploymentAndGroup, String> {
    let out = c
        .codedeploy
        .get_deployment()
        .deployment_id(deployment_id)
        .send()
        .await
        .map_err(|e| format!("GetDeployment {deployment_id}: {}", describe_sdk_error(&e)))?;
    let info = out
        .deployment_info()
        .ok_or_else(|| format!("GetDeployment {deployment_id}: no deploymentInfo in the answer"))?
        .clone();
    let application = info.application_name().unwrap_or_default();
    let deployment_group = info.deployment_group_name().unwrap_or_default();
    if application.is_empty() || deployment_group.is_empty() {
        return Err(format!(
            "GetDeployment {deployment_id}: no application or deployment group"
        ));
    }
    let appspec = info
        .revision()
        .and_then(|r| r.app_spec_content())
        .and_then(|a| a.content());
    let (group, image) = tokio::join!(
        c.codedeploy
            .get_deployment_group()
            .application_name(application)
            .deployment_group_name(deployment_group)
            .send(),
        async {
            match appspec {
                Some(text) => image_from_appspec(c, text).await,
                None => Err("the deployment's revision carries no AppSpec content (an S3 revision?), so the new image is unknown".to_string()),
            }
        }
    );
    let group = group.map_err(|e| {
        format!(
            "GetDeploymentGroup {application}/{deployment_group}: {}",
            describe_sdk_error(&e)
        )
    })?;
    Ok((info, group, image))
}

async fn running_event(c: &Clients, deployment_id: &str) -> Result<String, String> {
    let ids = c
        .codedeploy
        .list_deployment_targets()
        .deployment_id(deployment_id)
        .send()
        .await
        .map_err(|e| format!("ListDeploymentTargets: {}", describe_sdk_error(&e)))?;
    let ids = ids.target_ids().to_vec();
    if ids.is_empty() {
        return Err("the deployment has no targets yet".to_string());
    }
    let targets = c
        .codedeploy
        .batch_get_deployment_targets()
        .deployment_id(deployment_id)
        .set_target_ids(Some(ids))
        .send()
        .await
        .map_err(|e| format!("BatchGetDeploymentTargets: {}", describe_sdk_error(&e)))?;
    targets
        .deployment_targets()
        .iter()
        .filter_map(|t| t.ecs_target())
        .flat_map(|t| t.lifecycle_events())
        .find(|e| e.status().is_some_and(|s| s.as_str() == "InProgress"))
        .and_then(|e| e.lifecycle_event_name().map(str::to_string))
        .ok_or_else(|| {
            "no lifecycle event of the deployment's ECS target is InProgress".to_string()
        })
}

fn appspec_field(text: &str, key: &str) -> Option<String> {
    static CACHE: OnceLock<(Regex, Regex)> = OnceLock::new();
    let (td, cn) = CACHE.get_or_init(|| {
        let re = |k: &str| {
            Regex::new(&format!(r#"["']?{k}["']?\s*:\s*["']?([^"'\s,}}]+)"#)).expect("static regex")
        };
        (re("TaskDefinition"), re("ContainerName"))
    });
    let re = if key == "TaskDefinition" { td } else { cn };
    re.captures(text)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
}

/// The new image named by an ECS AppSpec (JSON or YAML): its TaskDefinition and ContainerName.
async fn image_from_appspec(c: &Clients, appspec: &str) -> Result<ImageVersion, String> {
    let td = appspec_field(appspec, "TaskDefinition")
        .ok_or_else(|| "the AppSpec names no TaskDefinition".to_string())?;
    let container = appspec_field(appspec, "ContainerName");
    image_of_task_definition(c, &td, container.as_deref()).await
}

/// The image of `container` (or of the only container) in a task definition.
pub async fn image_of_task_definition(
    c: &Clients,
    task_definition: &str,
    container: Option<&str>,
) -> Result<ImageVersion, String> {
    let out = c
        .ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| {
            format!(
                "DescribeTaskDefinition {task_definition}: {}",
                describe_sdk_error(&e)
            )
        })?;
    let defs = out
        .task_definition()
        .map(|t| t.container_definitions())
        .unwrap_or_default();
    let chosen = match container {
        Some(name) => defs.iter().find(|d| d.name() == Some(name)),
        None if defs.len() == 1 => defs.first(),
        None => None,
    };
    chosen
        .and_then(|d| d.image())
        .map(ImageVersion::parse)
        .ok_or_else(|| {
            format!(
                "task definition {task_definition} has no container {}",
                container
                    .map(|c| quote(c, 80))
                    .unwrap_or_else(|| "(several containers and none named)".into())
            )
        })
}

/// What the ECS service says about its test and production routes.
#[derive(Debug, Clone)]
pub struct EcsFacts {
    pub test_rule: Option<String>,
    pub prod_rule: Option<String>,
    pub container: Option<String>,
    pub image: Result<ImageVersion, String>,
}

/// Reads the service's load balancer configuration and the target revision's image.
pub async fn ecs_facts(
    c: &Clients,
    cluster: &str,
    service: &str,
    target_revision: Option<&str>,
) -> Result<EcsFacts, String> {
    let (svc, rev) = tokio::join!(
        c.ecs
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send(),
        async {
            match target_revision {
                None => Err("the event names no targetServiceRevisionArn".to_string()),
                Some(arn) => c
                    .ecs
                    .describe_service_revisions()
                    .service_revision_arns(arn)
                    .send()
                    .await
                    .map_err(|e| format!("DescribeServiceRevisions: {}", describe_sdk_error(&e)))
                    .and_then(|o| {
                        o.service_revisions()
                            .first()
                            .and_then(|r| r.task_definition().map(str::to_string))
                            .ok_or_else(|| format!("service revision {arn} not found"))
                    }),
            }
        }
    );
    let svc = svc.map_err(|e| {
        format!(
            "DescribeServices {cluster}/{service}: {}",
            describe_sdk_error(&e)
        )
    })?;
    let s = svc
        .services()
        .first()
        .ok_or_else(|| format!("service {service} not found in cluster {cluster}"))?;
    let lb = s
        .load_balancers()
        .iter()
        .find(|l| l.advanced_configuration().is_some());
    let adv = lb.and_then(|l| l.advanced_configuration());
    let container = lb.and_then(|l| l.container_name().map(str::to_string));
    let image = match rev {
        Ok(td) => image_of_task_definition(c, &td, container.as_deref()).await,
        Err(e) => Err(e),
    };
    Ok(EcsFacts {
        test_rule: adv.and_then(|a| a.test_listener_rule().map(str::to_string)),
        prod_rule: adv.and_then(|a| a.production_listener_rule().map(str::to_string)),
        container,
        image,
    })
}

/// The listener ARN a listener rule belongs to (`…:listener-rule/app/LB/ID/LISTENER/RULE`).
pub fn listener_of_rule(rule_arn: &str) -> Option<String> {
    let (head, rest) = rule_arn.split_once(":listener-rule/")?;
    let (listener_path, _rule) = rest.rsplit_once('/')?;
    Some(format!("{head}:listener/{listener_path}"))
}

/// Headers a request must carry to match a listener rule's conditions (host-header,
/// http-header with a literal value).
pub async fn rule_headers(c: &Clients, rule_arn: &str) -> Result<Vec<(String, String)>, String> {
    let out = c
        .elbv2
        .describe_rules()
        .rule_arns(rule_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeRules {rule_arn}: {}", describe_sdk_error(&e)))?;
    let literal = |v: &str| !v.contains('*') && !v.contains('?');
    let mut headers = Vec::new();
    for cond in out.rules().iter().flat_map(|r| r.conditions()) {
        if let Some(h) = cond.host_header_config().and_then(|h| h.values().first()) {
            if literal(h) {
                headers.push(("host".to_string(), h.clone()));
            }
        }
        if let Some(cfg) = cond.http_header_config() {
            if let (Some(name), Some(value)) = (cfg.http_header_name(), cfg.values().first()) {
                if literal(value) {
                    headers.push((name.to_ascii_lowercase(), value.clone()));
                }
            }
        }
    }
    Ok(headers)
}

/// `scheme://dns:port` of a listener.
///
/// DescribeListeners and DescribeLoadBalancers go out together: the load balancer's ARN is part
/// of the listener's (`…:listener/app/NAME/LB-ID/LISTENER-ID` belongs to
/// `…:loadbalancer/app/NAME/LB-ID`), so the DNS name costs no second round trip. Should the
/// listener name another load balancer than its ARN says, that one is read afterwards.
pub async fn listener_url(c: &Clients, listener_arn: &str) -> Result<url::Url, String> {
    let guessed = load_balancer_of_listener(listener_arn);
    let (listeners, lbs) = tokio::join!(
        c.elbv2
            .describe_listeners()
            .listener_arns(listener_arn)
            .send(),
        async {
            match &guessed {
                Some(lb) => Some(load_balancer_dns(c, lb).await),
                None => None,
            }
        }
    );
    let out = listeners.map_err(|e| {
        format!(
            "DescribeListeners {listener_arn}: {}",
            describe_sdk_error(&e)
        )
    })?;
    let l = out
        .listeners()
        .first()
        .ok_or_else(|| format!("listener {listener_arn} not found"))?;
    let port = l
        .port()
        .ok_or_else(|| format!("listener {listener_arn} has no port"))?;
    let scheme = match l.protocol().map(|p| p.as_str()) {
        Some("HTTPS") | Some("TLS") => "https",
        _ => "http",
    };
    let lb_arn = l
        .load_balancer_arn()
        .ok_or_else(|| format!("listener {listener_arn} names no load balancer"))?;
    let dns = match lbs {
        Some(dns) if guessed.as_deref() == Some(lb_arn) => dns?,
        _ => load_balancer_dns(c, lb_arn).await?,
    };
    url::Url::parse(&format!("{scheme}://{dns}:{port}"))
        .map_err(|e| format!("listener {listener_arn} gives no usable URL ({dns}:{port}): {e}"))
}

async fn load_balancer_dns(c: &Clients, lb_arn: &str) -> Result<String, String> {
    let lbs = c
        .elbv2
        .describe_load_balancers()
        .load_balancer_arns(lb_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeLoadBalancers {lb_arn}: {}", describe_sdk_error(&e)))?;
    lbs.load_balancers()
        .first()
        .and_then(|lb| lb.dns_name())
        .map(str::to_string)
        .ok_or_else(|| format!("load balancer {lb_arn} has no DNS name"))
}

/// The load balancer ARN a listener ARN belongs to (`…:listener/app/NAME/LB-ID/LISTENER-ID`).
pub fn load_balancer_of_listener(listener_arn: &str) -> Option<String> {
    let (head, rest) = listener_arn.split_once(":listener/")?;
    let (lb_path, listener_id) = rest.rsplit_once('/')?;
    if listener_id.is_empty() || lb_path.split('/').count() != 3 {
        return None;
    }
    Some(format!("{head}:loadbalancer/{lb_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appspec_fields_from_json_and_yaml() {
        let json = r#"{"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service",
            "Properties": {"TaskDefinition": "arn:aws:ecs:us-east-1:1:task-definition/web:7",
            "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": 8080}}}}]}"#;
        assert_eq!(
            appspec_field(json, "TaskDefinition").as_deref(),
            Some("arn:aws:ecs:us-east-1:1:task-definition/web:7")
        );
        assert_eq!(appspec_field(json, "ContainerName").as_deref(), Some("web"));
        let yaml = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:1:task-definition/web:8\"\n        LoadBalancerInfo:\n          ContainerName: 'api'\n          ContainerPort: 80\n";
        assert_eq!(
            appspec_field(yaml, "TaskDefinition").as_deref(),
            Some("arn:aws:ecs:us-east-1:1:task-definition/web:8")
        );
        assert_eq!(appspec_field(yaml, "ContainerName").as_deref(), Some("api"));
        assert_eq!(appspec_field("version: 0.0", "TaskDefinition"), None);
    }

    #[test]
    fn listener_arn_from_rule_arn() {
        assert_eq!(
            listener_of_rule("arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/lb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee").as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/50dc6c495c0c9188/f2f7dc8efc522ab2")
        );
        assert_eq!(
            listener_of_rule("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x"),
            None
        );
    }

    #[test]
    fn load_balancer_arn_from_listener_arn() {
        assert_eq!(
            load_balancer_of_listener("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/50dc6c495c0c9188/f2f7dc8efc522ab2").as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/lb/50dc6c495c0c9188")
        );
        assert_eq!(
            load_balancer_of_listener(
                "arn:aws:elasticloadbalancing:us-east-1:1:listener/net/nlb/1a2b/3c4d"
            )
            .as_deref(),
            Some("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/nlb/1a2b")
        );
        for odd in [
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb/1a2b/",
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/lb",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/lb/1a2b",
        ] {
            assert_eq!(load_balancer_of_listener(odd), None, "{odd}");
        }
    }
}
