//! Applications: one item each, keyed by the token.

use aws_sdk_dynamodb::types::AttributeValue;
use chat_domain::{
    AppToken, Application, ApplicationUpdate, DomainError, NewApplication, RoutingSettings,
    Timestamp,
};

use super::{DynamoStore, app_not_found, domain};
use crate::error::Result as StoreResult;
use crate::expr::Expr;
use crate::items::{self, number_attr, string_attr};
use crate::table::{self, attr};

impl DynamoStore {
    /// 1 PutItem, only if the token is free.
    pub(super) async fn insert_application(
        &self,
        new: &NewApplication,
    ) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let condition = format!("attribute_not_exists({})", expr.name(attr::PK));
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(items::application_item(new)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .send()
            .await;
        match super::conditional(result, "PutItem")? {
            Some(_) => Ok(Application {
                token: new.token.clone(),
                name: new.name.clone(),
                secret_generation: 1,
                previous_secret_expires_at: None,
                chats_count: 0,
                routing: RoutingSettings::default(),
                created_at: new.now,
                updated_at: new.now,
            }),
            None => Err(domain(DomainError::Conflict(format!(
                "application {} already exists",
                new.token
            )))),
        }
    }

    /// 1 UpdateItem.
    pub(super) async fn change_application(
        &self,
        token: &AppToken,
        change: &ApplicationUpdate,
    ) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let mut set = vec![expr.equals(attr::UPDATED_AT, "now", number_attr(change.now.0))];
        if let Some(name) = &change.name {
            set.push(expr.equals(attr::NAME, "name", string_attr(name.as_str())));
        }
        if let Some(routing) = &change.routing {
            set.push(expr.equals(
                attr::ROUTING_ENABLED,
                "routing",
                AttributeValue::Bool(routing.enabled),
            ));
            set.push(expr.equals(
                attr::ROUTING_CAP,
                "cap",
                number_attr(routing.max_open_chats),
            ));
        }
        let update = format!("SET {}", set.join(", "));
        self.update_application_item(token, expr, update).await
    }

    /// 1 UpdateItem: ADD makes concurrent rotations each take their own generation.
    pub(super) async fn rotate_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let update = format!(
            "SET {}, {} ADD {} {}",
            expr.equals(
                attr::PREVIOUS_SECRET_EXPIRES_AT,
                "previous",
                number_attr(previous_expires_at.0)
            ),
            expr.equals(attr::UPDATED_AT, "now", number_attr(now.0)),
            expr.name(attr::SECRET_GENERATION),
            expr.value("one", number_attr(1)),
        );
        self.update_application_item(token, expr, update).await
    }

    /// 1 GetItem.
    pub(super) async fn find_application(
        &self,
        token: &AppToken,
    ) -> StoreResult<Option<Application>> {
        let key = items::key(table::application_pk(token), table::APPLICATION_SK);
        self.get(key)
            .await?
            .as_ref()
            .map(items::application)
            .transpose()
    }

    /// UpdateItem of an existing application item, returning it as updated.
    async fn update_application_item(
        &self,
        token: &AppToken,
        mut expr: Expr,
        update: String,
    ) -> StoreResult<Application> {
        let condition = format!("attribute_exists({})", expr.name(attr::PK));
        let key = items::key(table::application_pk(token), table::APPLICATION_SK);
        let update = self.update_request(key, &update, Some(&condition), &expr)?;
        self.conditional_write("the application")
            .update(update, items::application, move |_| async move {
                Err(app_not_found(token))
            })
            .await
    }
}
